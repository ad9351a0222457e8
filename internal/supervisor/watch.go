package supervisor

import (
	"context"
	"strconv"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/metrics"
)

// Confirmations the watch loop asks for; variables so that tests may shorten them.
var (
	// checkEvery is how often a running job is confirmed (a live Agent.Worker below the listener).
	checkEvery = 15 * time.Second
	// busyGrace: a job the output announced but no worker confirms for this long is over. The
	// real JobDispatcher prints "Running job" before the first renewal of the request and starts
	// the worker only after it, and may return without "completed" (renew failure, cancel before
	// the worker starts, message timeout; reference §12).
	busyGrace = 30 * time.Second
	// listenRetry: "Listening for Jobs" not yet confirmed by the server is asked again this often.
	listenRetry = 2 * time.Second
	// connectGrace: after "Agent connect error", health stays 0 this long before the server is
	// asked; offline (or unanswered) then turns it 1. See the README ("Health").
	connectGrace = 2 * time.Minute
)

// verdict is what the process tree and the server say about the agent, at one moment.
type verdict struct {
	worker   bool   // an Agent.Worker runs below the listener
	answered bool   // the server answered
	online   bool   // the server sees the agent (with our name and id) online
	request  string // the request the server has assigned to it, "" when none
}

// verify asks the process tree and the server; it runs on its own goroutine.
func (sv *supervisor) verify(reg *registration, pid int) verdict {
	v := verdict{worker: workerBelow(pid)}
	ctx, cancel := context.WithTimeout(context.Background(), serverCheckTimeout)
	defer cancel()
	a, err := sv.server.Agent(ctx, reg.pool, reg.name)
	if err != nil {
		return v
	}
	v.answered = true
	if a != nil && (reg.id == 0 || a.ID == reg.id) {
		v.online = a.Online()
		if a.AssignedRequest != nil {
			v.request = "request " + strconv.FormatUint(a.AssignedRequest.ID, 10)
		}
	}
	return v
}

// watch follows a running listener until it exits (stopped=false) or a stop has been carried out
// (stopped=true, with the stop's outcome). The listener's lines are hints that start a
// confirmation: health turns 0 once the server sees the agent online, a job counts while a worker
// runs, the idle timeout stops only an agent with no worker and no assigned request, and a
// connection error turns health 1 only when the server confirms it after a grace.
func (sv *supervisor) watch(c *child, job *jobState, reg *registration) (stopped bool, err error) {
	var idle <-chan time.Time
	var idleTimer *time.Timer
	resetIdle := func() {
		if sv.s.IdleTimeout <= 0 {
			return
		}
		if idleTimer != nil {
			idleTimer.Stop()
		}
		idleTimer = time.NewTimer(sv.s.IdleTimeout)
		idle = idleTimer.C
	}

	// One confirmation at a time; what is asked for while one runs is asked right after it.
	results := make(chan verdict, 1)
	checking, again := false, false
	check := func() {
		if checking {
			again = true
			return
		}
		checking = true
		go func() { results <- sv.verify(reg, c.proc.Pid) }()
	}
	var (
		wantListen, wantIdle, wantConn bool
		idleRequest                    string           // a request assigned at the last idle check, with no worker
		retry                          <-chan time.Time // ask again for an unconfirmed "Listening"
		conn                           *time.Timer      // connection-error grace, nil when connected
		connC                          <-chan time.Time
		workerSeen                     time.Time // last time a worker was seen (or the job announced)
	)
	stopConn := func() {
		if conn != nil {
			conn.Stop()
		}
		conn, connC = nil, nil
	}
	defer stopConn()

	onEvent := func(ev event) {
		switch ev.kind {
		case evListening:
			stopConn()
			wantListen = true
			check()
		case evJobStarted:
			idle = nil
			workerSeen = time.Now()
			job.set(true, ev.job)
		case evJobFinished:
			if job.busy {
				sv.metric(metrics.Metric{Name: "JobsRun", Unit: metrics.Count, Value: 1})
			}
			job.set(false, "")
			resetIdle()
		case evUpdating:
			sv.state.phase(PhaseUpdating)
		case evConnectError:
			if conn == nil {
				sv.log.Warn("the listener lost the server; health turns 1 if the server confirms it after the grace", "grace", connectGrace.String())
				conn = time.NewTimer(connectGrace)
				connC = conn.C
			}
		case evReconnected:
			stopConn()
			wantListen = true
			check()
		}
	}
	onVerdict := func(v verdict) {
		checking = false
		switch {
		case v.worker:
			workerSeen = time.Now()
			if !job.busy {
				// A job the output did not announce (or in words not recognised).
				idle, wantIdle = nil, false
				job.set(true, firstNonEmpty(v.request, "unannounced job"))
			}
		case job.busy && time.Since(workerSeen) >= busyGrace:
			sv.log.Warn("no job is running: the listener announced one but no Agent.Worker runs below it", "job", job.name, "for", busyGrace.String())
			job.set(false, "")
			resetIdle()
		}
		if wantListen {
			if v.answered && v.online {
				wantListen = false
				if !job.busy {
					sv.state.phase(PhaseListening)
				}
				if !sv.online {
					sv.online = true
					sv.metric(metrics.Metric{Name: "TimeToOnline", Unit: metrics.Seconds, Value: time.Since(sv.started).Seconds()})
				}
			} else if retry == nil {
				retry = time.After(listenRetry)
			}
		}
		if wantIdle {
			wantIdle = false
			switch {
			case job.busy:
			case v.request != "" && v.request != idleRequest:
				// The listener may be about to start it; the next idle timeout decides.
				sv.log.Info("idle timeout reached, but the server has assigned a request; waiting for it", "request", v.request)
				idleRequest = v.request
				resetIdle()
			default:
				// No worker, and no request, or the same one a whole idle timeout later with no
				// worker for it: the listener does not run it.
				sv.log.Info("no job started within the idle timeout; stopping", "idle_timeout", sv.s.IdleTimeout.String())
				sv.stop.request("idle timeout")
			}
		}
		if wantConn {
			wantConn = false
			if v.answered && v.online {
				sv.log.Info("the listener reported a connection error, but the server sees the agent online; staying healthy")
			} else {
				sv.log.Warn("the listener has not reached the server within the grace, and the server does not see the agent online; health 1 until it reconnects",
					"grace", connectGrace.String(), "server_answered", v.answered)
				sv.state.phase(PhaseDisconnected)
			}
		}
		if again {
			again = false
			check()
		}
	}

	resetIdle()
	renew := time.NewTicker(time.Minute)
	defer renew.Stop()
	confirm := time.NewTicker(checkEvery)
	defer confirm.Stop()
	for {
		select {
		case ev := <-c.events:
			onEvent(ev)
		case v := <-results:
			onVerdict(v)
		case <-idle:
			idle, wantIdle = nil, true
			check()
		case <-retry:
			retry = nil
			check()
		case <-connC:
			conn, connC, wantConn = nil, nil, true
			check()
		case <-confirm.C:
			if job.busy {
				check()
			}
		case <-renew.C:
			job.renewProtection()
		case <-sv.stop.requested:
			return true, sv.stopListener(c, job, reg)
		case <-c.proc.Done():
			// Events printed just before the exit still count (e.g. the last job's result).
			for {
				select {
				case ev := <-c.events:
					onEvent(ev)
					continue
				default:
				}
				return false, nil
			}
		}
	}
}

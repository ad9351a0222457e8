package supervisor

import (
	"context"
	"errors"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The stop sequence (lifecycle step 8) and the fatal exit (step 9). stopbudget.go plans the
// deadlines it keeps.

// stopListener is lifecycle step 8 with the listener running.
func (sv *supervisor) stopListener(c *child, job *jobState, reg *registration) error {
	st := sv.stop
	_, reason := st.info()
	sv.state.phase(PhaseStopping)
	sv.log.Info("stopping", "reason", reason, "deadline", time.Until(st.deadline()).Round(time.Millisecond).String(),
		"job_running", job.busy, "job_deadline", time.Until(st.cancelAt()).Round(time.Millisecond).String())

	// a. No new job for this agent. With a budget too short to drain, cancelAt is now: the call
	// still gets a moment.
	sv.disable(reg, later(st.cancelAt(), time.Now().Add(time.Second)))

	// b. Let a running job finish while the budget allows.
	if !job.busy && time.Now().Before(st.cancelAt()) {
		if name, busy := sv.serverBusy(reg, st.cancelAt()); busy {
			job.busy, job.name = true, name
		}
	}
	if job.busy && !st.isForced() {
		sv.log.Info("waiting for the running job to finish", "job", job.name, "until", time.Until(st.cancelAt()).Round(time.Millisecond).String())
		t := timerAt(st.cancelAt())
	drain:
		for job.busy {
			select {
			case ev := <-c.events:
				if ev.kind == evJobFinished {
					job.set(false, "")
				}
			case <-c.proc.Done():
				break drain
			case <-st.forced:
				sv.log.Info("second signal: not waiting for the job")
				break drain
			case <-t.C:
				sv.log.Warn("the job did not finish within the stop budget; cancelling it", "job", job.name)
				break drain
			}
		}
		t.Stop()
	}

	// b'. SIGINT is the listener's cancel path: it cancels a job, deletes its session, exits 0.
	select {
	case <-c.proc.Done():
	default:
		if job.busy {
			sv.outcome = outcomeCancelled
		}
		sv.log.Info("asking the listener to stop (SIGINT)", "pid", c.proc.Pid)
		if err := c.proc.Signal(unix.SIGINT); err != nil {
			sv.log.Warn("signal the listener", "err", err)
		}
		wait := st.deregAt()
		// forced is watched until it fires once: a closed channel in the select would spin.
		forced := st.forced
		if st.isForced() {
			wait = minTime(wait, time.Now().Add(forcedGrace))
			forced = nil
		}
		t := timerAt(wait)
	exitWait:
		for {
			select {
			case <-c.proc.Done():
				break exitWait
			case ev := <-c.events:
				if ev.kind == evJobFinished {
					job.set(false, "")
				}
			case <-forced:
				forced = nil
				wait = minTime(wait, time.Now().Add(forcedGrace))
				t.Reset(max(0, time.Until(wait)))
			case <-t.C:
				// c. The budget is spent: kill the listener, by its PID alone. Whatever it still
				// runs dies with the container when PID 1 exits.
				sv.log.Warn("the listener did not stop in time; killing it", "pid", c.proc.Pid)
				sv.outcome = outcomeKilled
				if err := c.proc.Signal(unix.SIGKILL); err != nil {
					sv.log.Warn("kill the listener", "err", err)
				}
				select {
				case <-c.proc.Done():
				case <-time.After(2 * time.Second):
				}
				break exitWait
			}
		}
		t.Stop()
	}
	job.set(false, "")
	return sv.finishStop(reg)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// disable asks the server to assign this agent no new job.
func (sv *supervisor) disable(reg *registration, until time.Time) {
	if reg.id == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), minTime(until, time.Now().Add(3*time.Second)))
	defer cancel()
	if err := sv.server.SetEnabled(ctx, reg.pool, reg.id, false); err != nil {
		sv.log.Warn("could not disable the agent on the server; it may still be offered a job", "err", err)
		return
	}
	sv.log.Info("agent disabled on the server: no new job will be assigned", "agent", sv.name)
}

// serverBusy asks the server whether a job is assigned that the output has not shown yet.
func (sv *supervisor) serverBusy(reg *registration, until time.Time) (job string, busy bool) {
	ctx, cancel := context.WithDeadline(context.Background(), minTime(until, time.Now().Add(2*time.Second)))
	defer cancel()
	a, err := sv.server.Agent(ctx, reg.pool, sv.name)
	if err != nil || a == nil || a.AssignedRequest == nil {
		return "", false
	}
	return "request " + strconv.FormatUint(a.AssignedRequest.ID, 10), true
}

// abortDeadline bounds the clean-up after a stop that interrupted a download or a configuration:
// the contract gives such a stop 5 s in all.
func (sv *supervisor) abortDeadline() time.Time {
	at, _ := sv.stop.info()
	return minTime(at.Add(setupStopLimit), sv.stop.deadline())
}

// finishStop is lifecycle steps 8d and 8e once the listener is gone.
func (sv *supervisor) finishStop(reg *registration) error {
	sv.state.phase(PhaseStopping)
	if !sv.stop.isRequested() {
		sv.stop.request("listener finished")
	}
	return reg.Remove(sv.stop.deadline())
}

// fatal is lifecycle step 9: a fatal exit also deregisters.
func (sv *supervisor) fatal(reg *registration, cause error) error {
	sv.stop.request("fatal error")
	sv.state.phase(PhaseStopping)
	return errors.Join(cause, reg.Remove(sv.stop.deadline()))
}

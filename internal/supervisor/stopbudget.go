package supervisor

import (
	"context"
	"os"
	"sync"
	"time"
)

// The stop budget, planned from the first stop request. Everything after it must fit inside
// AZP_STOP_TIMEOUT, because the platform's SIGKILL follows (ECS stopTimeout, compose
// stop_grace_period):
//
//	first signal ─ drain the job ─ cancelAt: SIGINT ─ deregAt: SIGKILL, deregister ─ deadline ─ margin ─ SIGKILL
//
// These reserves are documented in the README ("Stopping").
const stopMargin = time.Second

func clamp(d, lo, hi time.Duration) time.Duration { return max(lo, min(hi, d)) }

// deregReserve is kept for deregistration and cleanup: a sixth of the budget, 3 s to 10 s.
func deregReserve(budget time.Duration) time.Duration {
	return clamp(budget/6, 3*time.Second, 10*time.Second)
}

// cancelPath is how long the real listener needs to cancel a running job and leave cleanly after
// SIGINT: the worker gives the job's steps 7.5 s after SIGINT and 2.5 s after SIGTERM
// (AgentKnobs PROCESS_SIGINT_TIMEOUT, PROCESS_SIGTERM_TIMEOUT), then the listener completes the job
// request and deletes its session (JobDispatcher, MessageListener.DeleteSessionAsync); 2 s for
// those two calls. Killed earlier, the server still holds the request and refuses the deletion.
const cancelPath = 12 * time.Second

// cancelReserve is kept for the listener to cancel a job and exit after SIGINT: the cancel path,
// or a sixth of the budget up to 15 s when that is more. A budget too short for the cancel path
// and the deregistration reserve (under 16 s, docker's default 10 s among them) cancels the job at
// once: everything but the deregistration reserve and the margin goes to the cancel.
func cancelReserve(budget time.Duration) time.Duration {
	want := max(cancelPath, min(budget/6, 15*time.Second))
	return max(0, min(want, budget-stopMargin-deregReserve(budget)))
}

// forcedGrace is how long the listener gets after SIGINT once a second signal asked to stop now:
// a second signal skips the wait for the job, not the listener's cancel path (killed in the middle
// of it, the server would refuse the deletion). The stop's own deadlines still bound it.
const forcedGrace = cancelPath

// setupStopLimit bounds a stop that arrives before the listener runs (download, configuration).
const setupStopLimit = 4 * time.Second

// stopper turns signals and internal reasons into one stop request, and a second signal into a
// forced stop.
type stopper struct {
	budget    time.Duration
	mu        sync.Mutex
	at        time.Time
	reason    string
	requested chan struct{}
	forced    chan struct{}
	forceOnce sync.Once
}

func newStopper(budget time.Duration) *stopper {
	return &stopper{budget: budget, requested: make(chan struct{}), forced: make(chan struct{})}
}

// watch turns signals into requests: the first is graceful, any later one forces.
func (st *stopper) watch(signals <-chan os.Signal) {
	for sig := range signals {
		if !st.request("signal " + signalName(sig)) {
			st.force()
		}
	}
}

// request starts the stop; it reports false when a stop was already under way.
func (st *stopper) request(reason string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.at.IsZero() {
		return false
	}
	st.at, st.reason = time.Now(), reason
	close(st.requested)
	return true
}

func (st *stopper) force() { st.forceOnce.Do(func() { close(st.forced) }) }

func (st *stopper) isRequested() bool {
	select {
	case <-st.requested:
		return true
	default:
		return false
	}
}

func (st *stopper) isForced() bool {
	select {
	case <-st.forced:
		return true
	default:
		return false
	}
}

func (st *stopper) info() (time.Time, string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.at, st.reason
}

// deadline is when the entrypoint must be done: the budget from the first request, less a margin.
func (st *stopper) deadline() time.Time {
	at, _ := st.info()
	return at.Add(st.budget - stopMargin)
}

func (st *stopper) deregAt() time.Time  { return st.deadline().Add(-deregReserve(st.budget)) }
func (st *stopper) cancelAt() time.Time { return st.deregAt().Add(-cancelReserve(st.budget)) }

// context returns a context cancelled by the first stop request, for work that a stop aborts
// (download, configuration, backoff).
func (st *stopper) context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-st.requested:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// timer fires at t; a zero or past t fires at once.
func timerAt(t time.Time) *time.Timer { return time.NewTimer(max(0, time.Until(t))) }

func signalName(sig os.Signal) string {
	switch sig.String() {
	case "terminated":
		return "SIGTERM"
	case "interrupt":
		return "SIGINT"
	case "quit":
		return "SIGQUIT"
	}
	return sig.String()
}

package supervisor

import (
	"fmt"
	"strings"
	"time"
)

// Action is what the supervisor does after the listener exited.
type Action int

const (
	// Relaunch starts the listener again after the shortest pause: it ran long enough to count
	// as healthy before it exited.
	Relaunch Action = iota
	// WaitUpdate waits for the agent's self-update to finish, then relaunches at once.
	WaitUpdate
	// Backoff starts the listener again after a pause that grows with every short run.
	Backoff
	// Reconfigure registers the agent again, then relaunches.
	Reconfigure
	// Fatal deregisters and exits 1.
	Fatal
	// Finish stops cleanly: deregisters and exits 0.
	Finish
)

func (a Action) String() string {
	switch a {
	case Relaunch:
		return "relaunch"
	case WaitUpdate:
		return "wait for update"
	case Backoff:
		return "back off"
	case Reconfigure:
		return "reconfigure"
	case Fatal:
		return "fatal"
	case Finish:
		return "finish"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Exit is one listener exit, as the watch loop saw it.
type Exit struct {
	Code     int
	Lines    []string      // the listener's last lines of output
	Ran      time.Duration // how long it ran
	Stopping bool          // a stop was requested before or while it exited
}

// History is what earlier exits of this run taught; Decide returns the next one.
type History struct {
	Backoff      time.Duration // the next pause after a short run; zero means backoffMin
	Reconfigured bool          // MissingAgent has already been answered by configuring again
}

// Decision is Decide's answer.
type Decision struct {
	Action Action
	Wait   time.Duration // Relaunch and Backoff: the pause before the next launch
	Reason string        // why, for the log; for Fatal, completes "the listener of agent X ..."
}

// Decide maps a listener exit to what happens next (contract, "Lifecycle of run" 6, 8 and 9;
// reference §3 for the listener's exit codes, Agent.Listener/Program.cs and Constants.ReturnCode):
//
//	stop requested     finish, whatever the code
//	0                  finish (a --once job is done, or the listener ended by itself)
//	1, MissingAgent    reconfigure once; a second time is fatal
//	1, SessionConflict back off: the server still holds a session of ours
//	1, otherwise       fatal (TerminatedError)
//	3, 4               the listener staged a self-update: wait for it (RunningAgentUpdate, RunOnceAgentUpdate)
//	2, any other       relaunch after a pause (RetryableError, or a crash)
//
// It is a pure function: the watch loop carries History from one exit to the next.
func Decide(e Exit, h History) (Decision, History) {
	backoff := h.Backoff
	if backoff <= 0 || e.Ran >= backoffResetRun {
		backoff = backoffMin
	}
	next := h
	next.Backoff = backoff
	pause := func(reason string) (Decision, History) {
		act := Backoff
		if e.Ran >= backoffResetRun {
			act = Relaunch
		}
		next.Backoff = min(2*backoff, backoffMax)
		return Decision{Action: act, Wait: backoff, Reason: reason}, next
	}
	if e.Stopping {
		return Decision{Action: Finish, Reason: "stop requested"}, next
	}
	switch e.Code {
	case 0:
		return Decision{Action: Finish, Reason: "the listener finished"}, next
	case 1:
		switch classifyFailure(e.Lines) {
		case outMissingAgent:
			if h.Reconfigured {
				return Decision{Action: Fatal, Reason: "lost its registration twice (MissingAgent)"}, next
			}
			next.Reconfigured = true
			return Decision{Action: Reconfigure, Reason: "the server no longer knows this agent (MissingAgent)"}, next
		case outSessionConflict:
			return pause("a session for this agent still exists (SessionConflict)")
		}
		return Decision{Action: Fatal, Reason: "exited 1 (fatal; its output is logged above with source=agent)"}, next
	case 3, 4:
		return Decision{Action: WaitUpdate, Reason: "the agent is updating itself"}, next
	}
	return pause(fmt.Sprintf("exited %d", e.Code))
}

// outcome sorts an exit code 1 by what the listener printed before it (reference §3, §11).
type outcome int

const (
	outFatal outcome = iota
	outMissingAgent
	outSessionConflict
)

func classifyFailure(lines []string) outcome {
	for _, l := range lines {
		switch {
		case strings.Contains(l, "SessionConflict") || strings.Contains(l, "session for this agent already exists"):
			return outSessionConflict
		case strings.Contains(l, "no longer exists on the server") || strings.Contains(l, "MissingAgent") || strings.Contains(l, "TaskAgentNotFound"):
			return outMissingAgent
		}
	}
	return outFatal
}

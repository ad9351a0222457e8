package supervisor

import (
	"fmt"
	"strconv"
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
	Lines    []string      // the listener's last lines of output, to explain a fatal exit
	Said     outcome       // what those lines say (localized), a hint only
	Ran      time.Duration // how long it ran
	Stopping bool          // a stop was requested before or while it exited
}

// AgentFact is what the server says about this run's agent.
type AgentFact int

const (
	AgentUnknown AgentFact = iota // not asked, or the server did not answer
	AgentOurs                     // an agent with our name and id
	AgentGone                     // no agent with our name
	AgentNotOurs                  // an agent with our name but another id: someone else's now
)

func (f AgentFact) String() string {
	switch f {
	case AgentOurs:
		return "ours"
	case AgentGone:
		return "gone"
	case AgentNotOurs:
		return "not ours"
	}
	return "unknown"
}

// Facts are what the supervisor confirmed outside the listener's output, which a job can write to.
type Facts struct {
	Agent AgentFact // asked after every exit 1
	// CredentialsMissing: .credentials or .credentials_rsaparams is gone from the agent root; the
	// listener then exits 2 with "Credentials not stored. Must reconfigure."
	// (MessageListener.CreateSessionAsync, reference §12).
	CredentialsMissing bool
}

// History is what earlier exits of this run taught; Decide returns the next one.
type History struct {
	Backoff      time.Duration // the next pause after a short run; zero means backoffMin
	Reconfigured bool          // the agent was already configured again once in this run
	ShortExits   int           // failures in a row that each ran less than backoffResetRun
}

// crashLoopLimit is how many failures in a row, each within a short run, end the run: a listener
// that cannot stay up (a broken package, a missing runtime library) is not relaunched forever.
const crashLoopLimit = 5

// Decision is Decide's answer.
type Decision struct {
	Action Action
	Wait   time.Duration // Relaunch and Backoff: the pause before the next launch
	Reason string        // why, for the log; for Fatal, completes "the listener of agent X ..."
}

// Decide maps a listener exit to what happens next (contract, "Lifecycle of run" 6, 8 and 9;
// reference §3 and §12 for the listener's exit codes, Agent.Listener/Program.cs and
// Constants.ReturnCode). What the output said is a hint; the facts decide:
//
//	stop requested          finish, whatever the code
//	0                       finish (a --once job is done, or the listener ended by itself)
//	credentials missing     reconfigure (any failing code: the listener exits 2 for it)
//	1, agent gone (server)  reconfigure (MissingAgent); a second time is fatal
//	1, agent not ours       fatal: another registration holds our name
//	1, SessionConflict      back off: the server still holds a session of ours
//	1, MissingAgent said,
//	   server unanswered    back off, to ask again
//	1, otherwise            fatal (TerminatedError)
//	3, 4                    the listener staged a self-update: wait for it (RunningAgentUpdate, RunOnceAgentUpdate)
//	2, any other            relaunch after a pause (RetryableError, or a crash)
//	crashLoopLimit failures in a row, each in a short run: fatal, naming the last lines
//
// It is a pure function: the watch loop carries History from one exit to the next.
func Decide(e Exit, f Facts, h History) (Decision, History) {
	backoff := h.Backoff
	if backoff <= 0 || e.Ran >= backoffResetRun {
		backoff = backoffMin
	}
	next := h
	next.Backoff = backoff
	if e.Ran >= backoffResetRun {
		next.ShortExits = 0
	}
	pause := func(reason string) (Decision, History) {
		act := Backoff
		if e.Ran >= backoffResetRun {
			act = Relaunch
		} else {
			next.ShortExits++
			if next.ShortExits >= crashLoopLimit {
				return Decision{Action: Fatal, Reason: fmt.Sprintf("%s, the %s time in a row within %s (crash loop); its last lines: %s",
					reason, ordinal(next.ShortExits), backoffResetRun, lastLines(e.Lines, 3))}, next
			}
		}
		next.Backoff = min(2*backoff, backoffMax)
		return Decision{Action: act, Wait: backoff, Reason: reason}, next
	}
	reconfigure := func(reason string) (Decision, History) {
		if h.Reconfigured {
			return Decision{Action: Fatal, Reason: reason + ", a second time after configuring it again"}, next
		}
		next.Reconfigured = true
		return Decision{Action: Reconfigure, Reason: reason}, next
	}
	if e.Stopping {
		return Decision{Action: Finish, Reason: "stop requested"}, next
	}
	switch e.Code {
	case 0:
		return Decision{Action: Finish, Reason: "the listener finished"}, next
	case 3, 4:
		return Decision{Action: WaitUpdate, Reason: "the agent is updating itself"}, next
	}
	if f.CredentialsMissing {
		return reconfigure(fmt.Sprintf("exited %d: its credentials (.credentials, .credentials_rsaparams) are missing", e.Code))
	}
	if e.Code != 1 {
		return pause(fmt.Sprintf("exited %d", e.Code))
	}
	switch {
	case f.Agent == AgentGone:
		return reconfigure("exited 1: the server no longer knows this agent (MissingAgent)")
	case f.Agent == AgentNotOurs:
		return Decision{Action: Fatal, Reason: "exited 1: another agent now holds its name in the pool (replaced by another container?)"}, next
	case e.Said == outSessionConflict:
		return pause("exited 1: a session for this agent still exists (SessionConflict)")
	case e.Said == outMissingAgent && f.Agent == AgentUnknown:
		return pause("exited 1 saying the server no longer knows it, which the server did not confirm yet")
	}
	return Decision{Action: Fatal, Reason: fmt.Sprintf("exited 1 (fatal; its last lines: %s)", lastLines(e.Lines, 3))}, next
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "1st"
	case 2:
		return "2nd"
	case 3:
		return "3rd"
	}
	return fmt.Sprintf("%dth", n)
}

// lastLines quotes the last n lines for a message.
func lastLines(lines []string, n int) string {
	if len(lines) == 0 {
		return "(none)"
	}
	lines = lines[max(0, len(lines)-n):]
	q := make([]string, len(lines))
	for i, l := range lines {
		q[i] = strconv.Quote(l)
	}
	return strings.Join(q, ", ")
}

// outcome sorts an exit code 1 by what the listener printed before it (reference §3, §11).
type outcome int

const (
	outFatal outcome = iota
	outMissingAgent
	outSessionConflict
)

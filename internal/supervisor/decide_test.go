package supervisor

import (
	"strings"
	"testing"
	"time"
)

// english is the listener's en-US strings (a package without strings.json).
var english = loadMessages("/nonexistent", nil)

// Every exit code and special case of the contract ("Lifecycle of run" 6, 8, 9) and of the real
// listener (reference §3, §12), without root.
func TestDecide(t *testing.T) {
	short, long := time.Second, backoffResetRun
	missing := []string{"The agent no longer exists on the server. Please reconfigure the agent."}
	conflict := []string{"A session for this agent already exists.", "Stop retry on SessionConflictException after retried for 240 seconds."}
	other := []string{"An error occurred: something else"}
	gone, ours, notOurs := Facts{Agent: AgentGone}, Facts{Agent: AgentOurs}, Facts{Agent: AgentNotOurs}
	noCreds := Facts{CredentialsMissing: true}
	min1 := History{Backoff: backoffMin}
	for _, tc := range []struct {
		name     string
		exit     Exit
		facts    Facts
		hist     History
		want     Action
		wait     time.Duration
		wantHist History
	}{
		// 8: a stop wins over any code and any fact.
		{"stopping, 0", Exit{Code: 0, Stopping: true}, Facts{}, History{}, Finish, 0, min1},
		{"stopping, 1 MissingAgent", Exit{Code: 1, Lines: missing, Stopping: true}, gone, History{}, Finish, 0, min1},
		{"stopping, 2", Exit{Code: 2, Stopping: true}, noCreds, History{}, Finish, 0, min1},
		{"stopping, 3", Exit{Code: 3, Stopping: true}, Facts{}, History{}, Finish, 0, min1},
		{"stopping, killed", Exit{Code: -1, Stopping: true}, Facts{}, History{}, Finish, 0, min1},
		// 6: 0 done.
		{"0: done", Exit{Code: 0, Ran: long}, Facts{}, History{}, Finish, 0, min1},
		{"0 after a short run", Exit{Code: 0, Ran: short}, Facts{}, History{Backoff: 8 * time.Second}, Finish, 0, History{Backoff: 8 * time.Second}},
		// 6 and 9: 1 is fatal, with the special cases; the server decides, the text is a hint.
		{"1: fatal", Exit{Code: 1, Lines: other}, ours, History{}, Fatal, 0, min1},
		{"1 without output: fatal", Exit{Code: 1}, ours, History{}, Fatal, 0, min1},
		{"1, server unanswered, no hint: fatal", Exit{Code: 1, Lines: other}, Facts{}, History{}, Fatal, 0, min1},
		{"1 MissingAgent, confirmed: reconfigure", Exit{Code: 1, Lines: missing}, gone, History{}, Reconfigure, 0, History{Backoff: backoffMin, Reconfigured: true}},
		{"1 MissingAgent in German, confirmed: reconfigure", Exit{Code: 1, Lines: []string{"Der Agent ist auf dem Server nicht mehr vorhanden."}}, gone, History{}, Reconfigure, 0, History{Backoff: backoffMin, Reconfigured: true}},
		{"1 MissingAgent twice: fatal", Exit{Code: 1, Lines: missing}, gone, History{Reconfigured: true}, Fatal, 0, History{Backoff: backoffMin, Reconfigured: true}},
		{"1 MissingAgent printed, server knows the agent: fatal", Exit{Code: 1, Lines: missing}, ours, History{}, Fatal, 0, min1},
		{"1 MissingAgent printed, server unanswered: back off", Exit{Code: 1, Lines: missing, Ran: short}, Facts{}, History{}, Backoff, backoffMin, History{Backoff: 2 * backoffMin, ShortExits: 1}},
		{"1 agent now someone else's: fatal", Exit{Code: 1, Lines: conflict}, notOurs, History{}, Fatal, 0, min1},
		{"1 SessionConflict: back off", Exit{Code: 1, Lines: conflict, Ran: short}, ours, History{}, Backoff, backoffMin, History{Backoff: 2 * backoffMin, ShortExits: 1}},
		{"1 SessionConflict, growing", Exit{Code: 1, Lines: conflict, Ran: short}, ours, History{Backoff: 4 * time.Second}, Backoff, 4 * time.Second, History{Backoff: 8 * time.Second, ShortExits: 1}},
		{"1 SessionConflict after a long run: relaunch", Exit{Code: 1, Lines: conflict, Ran: 4 * time.Minute}, ours, History{Backoff: 8 * time.Second, ShortExits: 3}, Relaunch, backoffMin, History{Backoff: 2 * backoffMin}},
		// Missing credentials: the real listener exits 2 ("Credentials not stored. Must reconfigure.").
		{"2, credentials missing: reconfigure", Exit{Code: 2, Ran: short}, noCreds, History{}, Reconfigure, 0, History{Backoff: backoffMin, Reconfigured: true}},
		{"1, credentials missing: reconfigure", Exit{Code: 1}, Facts{CredentialsMissing: true, Agent: AgentOurs}, History{}, Reconfigure, 0, History{Backoff: backoffMin, Reconfigured: true}},
		{"2, credentials missing again: fatal", Exit{Code: 2, Ran: short}, noCreds, History{Reconfigured: true}, Fatal, 0, History{Backoff: backoffMin, Reconfigured: true}},
		{"3, credentials missing: update first", Exit{Code: 3}, noCreds, History{}, WaitUpdate, 0, min1},
		// 6: 2 retry with backoff.
		{"2: back off", Exit{Code: 2, Ran: short}, Facts{}, History{}, Backoff, backoffMin, History{Backoff: 2 * backoffMin, ShortExits: 1}},
		{"2: backoff grows", Exit{Code: 2, Ran: short}, Facts{}, History{Backoff: 2 * time.Second, ShortExits: 1}, Backoff, 2 * time.Second, History{Backoff: 4 * time.Second, ShortExits: 2}},
		{"2: backoff capped", Exit{Code: 2, Ran: short}, Facts{}, History{Backoff: backoffMax}, Backoff, backoffMax, History{Backoff: backoffMax, ShortExits: 1}},
		{"2 after a long run: relaunch, backoff and count reset", Exit{Code: 2, Ran: long}, Facts{}, History{Backoff: 32 * time.Second, ShortExits: 4}, Relaunch, backoffMin, History{Backoff: 2 * backoffMin}},
		{"2 keeps reconfigured", Exit{Code: 2, Ran: short}, Facts{}, History{Reconfigured: true}, Backoff, backoffMin, History{Backoff: 2 * backoffMin, Reconfigured: true, ShortExits: 1}},
		// Crash loop: the limit of short failures in a row is fatal.
		{"2, crash loop", Exit{Code: 2, Ran: short, Lines: []string{"a", "b", "Unhandled exception. boom"}}, Facts{}, History{Backoff: 16 * time.Second, ShortExits: crashLoopLimit - 1}, Fatal, 0, History{Backoff: 16 * time.Second, ShortExits: crashLoopLimit}},
		{"segv, crash loop", Exit{Code: 139, Ran: short}, Facts{}, History{ShortExits: crashLoopLimit - 1}, Fatal, 0, History{Backoff: backoffMin, ShortExits: crashLoopLimit}},
		{"SessionConflict, crash loop", Exit{Code: 1, Lines: conflict, Ran: short}, ours, History{ShortExits: crashLoopLimit - 1}, Fatal, 0, History{Backoff: backoffMin, ShortExits: crashLoopLimit}},
		// 6: 3 and 4 self-update.
		{"3: update", Exit{Code: 3, Ran: short}, Facts{}, History{}, WaitUpdate, 0, min1},
		{"4: update (run once)", Exit{Code: 4, Ran: long}, Facts{}, History{}, WaitUpdate, 0, min1},
		// Any other code (a crash, a signal) is retried like 2.
		{"segv", Exit{Code: 139, Ran: short}, Facts{}, History{}, Backoff, backoffMin, History{Backoff: 2 * backoffMin, ShortExits: 1}},
		{"killed by a signal", Exit{Code: -1, Ran: short}, Facts{}, History{}, Backoff, backoffMin, History{Backoff: 2 * backoffMin, ShortExits: 1}},
		{"5 after a long run", Exit{Code: 5, Ran: long}, Facts{}, History{}, Relaunch, backoffMin, History{Backoff: 2 * backoffMin}},
	} {
		e := tc.exit
		e.Said = german.classifyFailure(e.Lines)
		d, h := Decide(e, tc.facts, tc.hist)
		if d.Action != tc.want || d.Wait != tc.wait || h != tc.wantHist {
			t.Errorf("%s: Decide = %v wait %s, history %+v; want %v wait %s, history %+v", tc.name, d.Action, d.Wait, h, tc.want, tc.wait, tc.wantHist)
		}
		if d.Reason == "" {
			t.Errorf("%s: no reason", tc.name)
		}
	}
}

// The crash loop's message names the last lines, so the log says why.
func TestDecideCrashLoopNamesLastLines(t *testing.T) {
	var h History
	var d Decision
	for i := 0; i < crashLoopLimit; i++ {
		d, h = Decide(Exit{Code: 2, Ran: time.Second, Lines: []string{"starting", "Unhandled exception. System.IO.IOException: disk"}}, Facts{}, h)
	}
	if d.Action != Fatal || !strings.Contains(d.Reason, "Unhandled exception. System.IO.IOException: disk") || !strings.Contains(d.Reason, "crash loop") {
		t.Fatalf("after %d short exits: %v %q", crashLoopLimit, d.Action, d.Reason)
	}
}

// The e2e crash loop sees 1s, 2s, 4s: the history carries the backoff from exit to exit.
func TestDecideBackoffSequence(t *testing.T) {
	var h History
	var waits []time.Duration
	for _, code := range []int{2, 2, 139, 1} {
		var d Decision
		lines := []string{"A session for this agent already exists."}
		d, h = Decide(Exit{Code: code, Lines: lines, Said: english.classifyFailure(lines), Ran: time.Millisecond}, Facts{Agent: AgentOurs}, h)
		waits = append(waits, d.Wait)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
}

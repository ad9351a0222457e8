package supervisor

import (
	"testing"
	"time"
)

// Every exit code and special case of the contract ("Lifecycle of run" 6, 8, 9), without root.
func TestDecide(t *testing.T) {
	short, long := time.Second, backoffResetRun
	missing := []string{"The agent no longer exists on the server. Please reconfigure the agent."}
	notFound := []string{"TaskAgentNotFoundException: agent 7 not found"}
	conflict := []string{"A session for this agent already exists.", "Stop retry on SessionConflictException after retried for 240 seconds."}
	other := []string{"An error occurred: something else"}
	for _, tc := range []struct {
		name     string
		exit     Exit
		hist     History
		want     Action
		wait     time.Duration
		wantHist History
	}{
		// 8: a stop wins over any code.
		{"stopping, 0", Exit{Code: 0, Stopping: true}, History{}, Finish, 0, History{Backoff: backoffMin}},
		{"stopping, 1 MissingAgent", Exit{Code: 1, Lines: missing, Stopping: true}, History{}, Finish, 0, History{Backoff: backoffMin}},
		{"stopping, 2", Exit{Code: 2, Stopping: true}, History{}, Finish, 0, History{Backoff: backoffMin}},
		{"stopping, 3", Exit{Code: 3, Stopping: true}, History{}, Finish, 0, History{Backoff: backoffMin}},
		{"stopping, killed", Exit{Code: -1, Stopping: true}, History{}, Finish, 0, History{Backoff: backoffMin}},
		// 6: 0 done.
		{"0: done", Exit{Code: 0, Ran: long}, History{}, Finish, 0, History{Backoff: backoffMin}},
		{"0 after a short run", Exit{Code: 0, Ran: short}, History{Backoff: 8 * time.Second}, Finish, 0, History{Backoff: 8 * time.Second}},
		// 6 and 9: 1 fatal, with the special cases.
		{"1: fatal", Exit{Code: 1, Lines: other}, History{}, Fatal, 0, History{Backoff: backoffMin}},
		{"1 without output: fatal", Exit{Code: 1}, History{}, Fatal, 0, History{Backoff: backoffMin}},
		{"1 MissingAgent: reconfigure", Exit{Code: 1, Lines: missing}, History{}, Reconfigure, 0, History{Backoff: backoffMin, Reconfigured: true}},
		{"1 TaskAgentNotFound: reconfigure", Exit{Code: 1, Lines: notFound}, History{}, Reconfigure, 0, History{Backoff: backoffMin, Reconfigured: true}},
		{"1 MissingAgent twice: fatal", Exit{Code: 1, Lines: missing}, History{Reconfigured: true}, Fatal, 0, History{Backoff: backoffMin, Reconfigured: true}},
		{"1 SessionConflict: back off", Exit{Code: 1, Lines: conflict, Ran: short}, History{}, Backoff, backoffMin, History{Backoff: 2 * backoffMin}},
		{"1 SessionConflict, growing", Exit{Code: 1, Lines: conflict, Ran: short}, History{Backoff: 4 * time.Second}, Backoff, 4 * time.Second, History{Backoff: 8 * time.Second}},
		// 6: 2 retry with backoff.
		{"2: back off", Exit{Code: 2, Ran: short}, History{}, Backoff, backoffMin, History{Backoff: 2 * backoffMin}},
		{"2: backoff grows", Exit{Code: 2, Ran: short}, History{Backoff: 2 * time.Second}, Backoff, 2 * time.Second, History{Backoff: 4 * time.Second}},
		{"2: backoff capped", Exit{Code: 2, Ran: short}, History{Backoff: backoffMax}, Backoff, backoffMax, History{Backoff: backoffMax}},
		{"2 after a long run: relaunch, backoff reset", Exit{Code: 2, Ran: long}, History{Backoff: 32 * time.Second}, Relaunch, backoffMin, History{Backoff: 2 * backoffMin}},
		{"2 keeps reconfigured", Exit{Code: 2, Ran: short}, History{Reconfigured: true}, Backoff, backoffMin, History{Backoff: 2 * backoffMin, Reconfigured: true}},
		// 6: 3 and 4 self-update.
		{"3: update", Exit{Code: 3, Ran: short}, History{}, WaitUpdate, 0, History{Backoff: backoffMin}},
		{"4: update (run once)", Exit{Code: 4, Ran: long}, History{}, WaitUpdate, 0, History{Backoff: backoffMin}},
		// Any other code (a crash, a signal) is retried like 2.
		{"segv", Exit{Code: 139, Ran: short}, History{}, Backoff, backoffMin, History{Backoff: 2 * backoffMin}},
		{"killed by a signal", Exit{Code: -1, Ran: short}, History{}, Backoff, backoffMin, History{Backoff: 2 * backoffMin}},
		{"5", Exit{Code: 5, Ran: long}, History{}, Relaunch, backoffMin, History{Backoff: 2 * backoffMin}},
	} {
		d, h := Decide(tc.exit, tc.hist)
		if d.Action != tc.want || d.Wait != tc.wait || h != tc.wantHist {
			t.Errorf("%s: Decide = %v wait %s, history %+v; want %v wait %s, history %+v", tc.name, d.Action, d.Wait, h, tc.want, tc.wait, tc.wantHist)
		}
		if d.Reason == "" {
			t.Errorf("%s: no reason", tc.name)
		}
	}
}

// The e2e crash loop sees 1s, 2s, 4s: the history carries the backoff from exit to exit.
func TestDecideBackoffSequence(t *testing.T) {
	var h History
	var waits []time.Duration
	for _, code := range []int{2, 2, 139, 1} {
		var d Decision
		lines := []string{"A session for this agent already exists."}
		d, h = Decide(Exit{Code: code, Lines: lines, Ran: time.Millisecond}, h)
		waits = append(waits, d.Wait)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}
}

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// The real listener prints in its culture's words (bin/<culture>/strings.json): with
// LANG=de_DE.UTF-8 "Listening for Jobs" never appears, yet health turns 0 and a job is seen.
func TestLocalizedListener(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-localized")
	in.env["LANG"] = "de_DE.UTF-8"
	r := in.start()
	in.waitOnline(30 * time.Second)
	r.waitLog("Auf Aufträge lauschen", 20*time.Second)
	r.waitHealth(0, 15*time.Second)
	if n := r.countLogs("Listening for Jobs"); n != 0 {
		t.Fatalf("the listener printed English lines (%d): the fixture is not localized", n)
	}
	id := h.queue(sim.JobSpec{Name: "lokal", Duration: 2 * time.Second})
	r.waitLog("job started", 15*time.Second)
	h.waitRequest(id, 20*time.Second, finished)
	r.stopCleanly()
	h.wantResult(id, "succeeded")
}

// "Running job" without "completed with result" (the first renewal of the request failed, so no
// worker ever started; JobDispatcher.RunJobAsync) does not stick: no Agent.Worker below the
// listener, so the job is over and the agent is listening (health 0) again.
func TestRunningJobWithoutCompletion(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-no-completion")
	r := in.start()
	in.waitOnline(30 * time.Second)
	h.queue(sim.JobSpec{Name: "never-started", Duration: time.Minute, FailFirstRenew: true})
	r.waitLog("job started", 20*time.Second)
	r.waitLog("no job is running", 90*time.Second)
	st := readState(t, in.stateDir)
	if st["phase"] != "listening" || st["job"] != nil {
		t.Fatalf("state after the job was found not running: %v", st)
	}
	r.waitHealth(0, 5*time.Second)
	r.signal(15)
	r.wait(20 * time.Second)
}

func readState(t *testing.T, dir string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// A registration kept on a persistent agent directory whose .credentials went missing: the real
// listener exits 2 ("Credentials not stored. Must reconfigure.") at every start. The entrypoint
// configures the agent again instead of relaunching it forever.
func TestMissingCredentialsReconfigures(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-no-credentials")
	in.env["AZP_DEREGISTER"] = "false"
	r := in.start()
	in.waitOnline(30 * time.Second)
	r.stopCleanly()
	if err := os.Remove(filepath.Join(in.agentDir, ".credentials")); err != nil {
		t.Fatal(err)
	}
	r = in.start()
	r.waitLog("configuring it again", 60*time.Second)
	r.waitHealth(0, 60*time.Second)
	if _, err := os.Stat(filepath.Join(in.agentDir, ".credentials")); err != nil {
		t.Fatalf("no .credentials after reconfiguring: %v", err)
	}
	r.stopCleanly()
}

// A listener that keeps failing within seconds of its start is not relaunched forever: after the
// crash-loop limit the entrypoint deregisters and exits 1 with a message naming its last lines.
func TestCrashLoopIsFatal(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-crash-fatal")
	in.env["FAKE_AGENT_RUN_EXITS"] = "2,2,2,2,2,2,2"
	r := in.start()
	if code := r.wait(90 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	in.assertRegistered(false)
	rec := r.waitLog("stopped with an error", time.Second)
	if err, _ := rec["err"].(string); !strings.Contains(err, "crash loop") || !strings.Contains(err, "scripted exit 2") {
		t.Fatalf("the fatal message does not say crash loop and name the last lines: %v", rec)
	}
}

// A job that ignores SIGINT takes the real worker's whole cancel path (7.5 s, SIGTERM, 2.5 s) and
// then the listener completes the request: with the ECS default budget of 30 s the entrypoint
// waits for that, deregisters and exits 0 in time.
func TestSigtermRealCancelPath(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-real-cancel")
	in.env["AZP_STOP_TIMEOUT"] = "30s"
	r, id := in.startWithJob(sim.JobSpec{Name: "stubborn", Duration: 5 * time.Minute})
	if code := r.stopWithin(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	h.wantResult(id, "canceled")
	in.assertRegistered(false)
	outcome := ""
	for _, rec := range r.records() {
		if _, ok := rec["StopOutcome"]; ok {
			outcome, _ = rec["Outcome"].(string)
		}
	}
	if outcome != "cancelled" {
		t.Fatalf("StopOutcome %q, want cancelled", outcome)
	}
}

// With AGENT_DIAGLOGPATH the listener's self-update writes its log there, not in _diag: the
// update is still found and the agent relaunched.
func TestSelfUpdateDiagLogPath(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-update-diag")
	diag := filepath.Join(h.root, "diag")
	if err := os.MkdirAll(diag, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(diag, 0o777)
	in.env["AGENT_DIAGLOGPATH"] = diag
	r := in.start()
	in.waitOnline(30 * time.Second)
	if err := h.sim.RequestUpdate(in.name, "4.261.0"); err != nil {
		t.Fatal(err)
	}
	r.waitLog("updating itself", 20*time.Second)
	r.waitLog("self-update finished", 30*time.Second)
	if m, _ := filepath.Glob(filepath.Join(diag, "SelfUpdate-*.log.*")); len(m) == 0 {
		t.Fatal("the update log is not in AGENT_DIAGLOGPATH: the fixture does not honour it")
	}
	r.waitHealth(0, 20*time.Second)
	r.stopCleanly()
}

// The run's EMF metrics (contract, "Metrics"): TimeToOnline once, JobsRun per job, StopOutcome
// once with its Outcome, each with the Pool dimension, in the AzpEntrypoint namespace.
func TestRunMetrics(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-metrics")
	r := in.start()
	in.waitOnline(30 * time.Second)
	r.waitHealth(0, 15*time.Second)
	for range 2 {
		id := h.queue(sim.JobSpec{Name: "measured", Duration: time.Second})
		h.waitRequest(id, 30*time.Second, finished)
	}
	r.stopCleanly()
	count := map[string]int{}
	for _, rec := range r.records() {
		aws, ok := rec["_aws"].(map[string]any)
		if !ok {
			continue
		}
		if rec["Pool"] != "Default" {
			t.Errorf("metric record without the Pool dimension: %v", rec)
		}
		if d, _ := aws["CloudWatchMetrics"].([]any); len(d) != 1 || d[0].(map[string]any)["Namespace"] != "AzpEntrypoint" {
			t.Errorf("metric record outside the AzpEntrypoint namespace: %v", rec)
		}
		for _, name := range []string{"TimeToOnline", "JobsRun", "StopOutcome"} {
			if _, ok := rec[name]; ok {
				count[name]++
			}
		}
		if _, ok := rec["StopOutcome"]; ok && rec["Outcome"] != "drained" {
			t.Errorf("StopOutcome %v, want Outcome drained", rec)
		}
	}
	if count["TimeToOnline"] != 1 || count["JobsRun"] != 2 || count["StopOutcome"] != 1 {
		t.Fatalf("metric records %v, want TimeToOnline 1, JobsRun 2, StopOutcome 1", count)
	}
}

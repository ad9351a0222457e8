package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
)

// The README's stop-budget table is the contract users plan with: keep it true.
func TestStopBudgetMatchesREADME(t *testing.T) {
	for _, tc := range []struct {
		budget                     time.Duration
		job, cancel, dereg, margin time.Duration
	}{
		{10 * time.Second, 0, 6 * time.Second, 3 * time.Second, time.Second},
		{30 * time.Second, 12 * time.Second, 12 * time.Second, 5 * time.Second, time.Second},
		{120 * time.Second, 94 * time.Second, 15 * time.Second, 10 * time.Second, time.Second},
	} {
		st := newStopper(tc.budget)
		st.request("test")
		at, _ := st.info()
		if got := st.deadline().Sub(at); got != tc.budget-tc.margin {
			t.Errorf("%s: deadline after %s, want %s", tc.budget, got, tc.budget-tc.margin)
		}
		if got := st.deadline().Sub(st.deregAt()); got != tc.dereg {
			t.Errorf("%s: deregistration reserve %s, want %s", tc.budget, got, tc.dereg)
		}
		if got := st.deregAt().Sub(st.cancelAt()); got != tc.cancel {
			t.Errorf("%s: cancel reserve %s, want %s", tc.budget, got, tc.cancel)
		}
		if got := st.cancelAt().Sub(at); got != tc.job {
			t.Errorf("%s: a job may run %s, want %s", tc.budget, got, tc.job)
		}
		readme, err := os.ReadFile("../../README.md")
		if err != nil {
			t.Fatal(err)
		}
		row := "| " + secs(tc.budget)
		want := "| " + strings.Join([]string{secs(tc.job), secs(tc.cancel), secs(tc.dereg), secs(tc.margin)}, " | ") + " |"
		found := false
		for _, line := range strings.Split(string(readme), "\n") {
			found = found || (strings.HasPrefix(line, row) && strings.HasSuffix(line, want))
		}
		if !found {
			t.Errorf("README has no stop-budget row %q ... %q", row, want)
		}
	}
}

// After SIGINT the real worker gives a job's steps 7.5 s, then SIGTERM and 2.5 s, then the listener
// completes the request and deletes its session (reference §12). Every budget that can hold that
// and the deregistration reserve keeps it back for the cancel; a shorter one cancels at once.
func TestCancelReserveFitsCancelPath(t *testing.T) {
	for budget := config.MinStopTimeout; budget <= 2*time.Minute; budget += 500 * time.Millisecond {
		st := newStopper(budget)
		st.request("test")
		at, _ := st.info()
		cancel := st.deregAt().Sub(st.cancelAt())
		job := st.cancelAt().Sub(at)
		if job < 0 || cancel < 0 {
			t.Fatalf("%s: job %s, cancel %s", budget, job, cancel)
		}
		if budget >= cancelPath+deregReserve(budget)+stopMargin {
			if cancel < cancelPath {
				t.Errorf("%s: cancel reserve %s, shorter than the listener's cancel path %s", budget, cancel, cancelPath)
			}
		} else if job != 0 {
			t.Errorf("%s: too short for the cancel path, yet a job may run %s before it is cancelled", budget, job)
		}
		if got := st.deadline().Sub(at); got != budget-stopMargin && budget > stopMargin {
			t.Errorf("%s: deadline after %s", budget, got)
		}
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%d s", int(d.Seconds())) }

func TestAgentFile(t *testing.T) {
	dir := t.TempDir()
	if a, err := readAgentFile(dir); a != nil || err != nil {
		t.Fatalf("unconfigured: %+v, %v", a, err)
	}
	body := `{"agentId":7,"agentName":"ecs-1-agent","poolId":1,"poolName":"Default","serverUrl":"https://dev.azure.com/acme/","workFolder":"/azp/work/slot-0"}`
	os.WriteFile(filepath.Join(dir, ".agent"), append(utf8BOM, body...), 0o644)
	a, err := readAgentFile(dir)
	if err != nil || a.AgentID != 7 {
		t.Fatalf("%+v, %v", a, err)
	}
	if !a.matches("https://dev.azure.com/ACME", "default", "ECS-1-agent", "/azp/work/slot-0/") {
		t.Error("same agent, different case and slashes: should match")
	}
	for _, miss := range [][4]string{
		{"https://dev.azure.com/other", "Default", "ecs-1-agent", "/azp/work/slot-0"},
		{"https://dev.azure.com/acme", "Linux", "ecs-1-agent", "/azp/work/slot-0"},
		{"https://dev.azure.com/acme", "Default", "ecs-2-agent", "/azp/work/slot-0"},
		{"https://dev.azure.com/acme", "Default", "ecs-1-agent", "/azp/work/slot-1"},
	} {
		if a.matches(miss[0], miss[1], miss[2], miss[3]) {
			t.Errorf("matches %v", miss)
		}
	}
	for _, f := range configFiles {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("x"), 0o600)
	if err := wipeConfig(dir); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "keep.txt" {
		t.Fatalf("left after wipe: %v", left)
	}
}

func TestAgentEnvironment(t *testing.T) {
	s := &config.Settings{HTTPSProxy: "http://proxy:3128", NoProxy: "169.254.170.2", ToolsDir: "/efs/tools"}
	environ := []string{
		"PATH=/usr/bin", "AZP_URL=https://dev.azure.com/acme", "AZP_TOKEN=secret", "AZP_TOKEN_FILE=/run/secrets/pat",
		"AZP_CLIENTSECRET=secret", "AZP_SECRET_ID=arn", "VSTS_AGENT_INPUT_TOKEN=secret", "vsts_agent_input_password=x",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/x", "AWS_CONTAINER_AUTHORIZATION_TOKEN=t",
		"AWS_ACCESS_KEY_ID=AKIA", "AWS_SECRET_ACCESS_KEY=s", "AWS_SESSION_TOKEN=t", "AWS_REGION=eu-west-1",
		"ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/x", "MY_VAR=1",
	}
	env := agentEnv(environ, s, map[string]string{"HOME": "/home/agent"})
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AZP_") || strings.HasPrefix(strings.ToUpper(k), "VSTS_AGENT_INPUT_") || strings.HasPrefix(k, "AWS_CONTAINER_") ||
			k == "AWS_ACCESS_KEY_ID" || k == "AWS_SECRET_ACCESS_KEY" || k == "AWS_SESSION_TOKEN" {
			t.Errorf("listener environment keeps %s", k)
		}
	}
	for _, want := range []string{"PATH=/usr/bin", "MY_VAR=1", "AWS_REGION=eu-west-1", "HOME=/home/agent", "VSTS_HTTP_PROXY=http://proxy:3128",
		"no_proxy=169.254.170.2", "AGENT_TOOLSDIRECTORY=/efs/tools", "ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/x"} {
		if !slices.Contains(env, want) {
			t.Errorf("listener environment lacks %s", want)
		}
	}
	s.JobTaskRole = true
	if env := agentEnv(environ, s, nil); !slices.Contains(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/x") {
		t.Error("AZP_JOB_TASK_ROLE=true must pass the task role on")
	}
}

func TestHealth(t *testing.T) {
	dir := t.TempDir()
	if _, err := Health(dir); err == nil {
		t.Fatal("healthy without state")
	}
	for phase, healthy := range map[Phase]bool{
		PhaseStarting: false, PhaseConfiguring: false, PhaseStarted: false, PhaseListening: true,
		PhaseBusy: true, PhaseDisconnected: false, PhaseExited: false, PhaseBackoff: false, PhaseUpdating: false, PhaseStopping: false, PhaseStopped: false,
	} {
		w, err := newStateWriter(dir)
		if err != nil {
			t.Fatal(err)
		}
		w.phase(phase)
		if _, err := Health(dir); (err == nil) != healthy {
			t.Errorf("phase %s: healthy = %v, want %v (%v)", phase, err == nil, healthy, err)
		}
	}
	// Once stopping, nothing makes the agent healthy again (a job finishing during the drain).
	w, _ := newStateWriter(dir)
	w.phase(PhaseBusy)
	w.phase(PhaseStopping)
	w.phase(PhaseListening)
	if _, err := Health(dir); err == nil {
		t.Error("healthy again after the stop request")
	}
	w.phase(PhaseStopped)
	if st, _ := Health(dir); st.Phase != PhaseStopped {
		t.Errorf("phase %s after stopped, want stopped", st.Phase)
	}
	// A state left by a dead entrypoint is not healthy.
	os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"pid":2147483646,"phase":"listening"}`), 0o644)
	if _, err := Health(dir); err == nil {
		t.Error("healthy with a dead writer")
	}
}

func TestUpdateResult(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "_diag")
	if got := diagDir([]string{"PATH=/bin"}, root); got != dir {
		t.Fatalf("diagDir = %s, want %s", got, dir)
	}
	os.MkdirAll(dir, 0o755)
	since := time.Now().Add(-time.Second)
	if _, ok := updateResult(dir, since); ok {
		t.Fatal("result without a log")
	}
	os.WriteFile(filepath.Join(dir, "SelfUpdate-20261122-100000.log"), nil, 0o644)
	if _, ok := updateResult(dir, since); ok {
		t.Fatal("an unmarked log is not a result")
	}
	os.Rename(filepath.Join(dir, "SelfUpdate-20261122-100000.log"), filepath.Join(dir, "SelfUpdate-20261122-100000.log.succeed"))
	if r, ok := updateResult(dir, since); !ok || r != "succeed" {
		t.Fatalf("%q %v", r, ok)
	}
	if _, ok := updateResult(dir, time.Now().Add(time.Hour)); ok {
		t.Fatal("an older update's log must not count")
	}
}

// With AGENT_DIAGLOGPATH the listener writes the self-update log there, not in _diag
// (HostContext.GetDiagDirectory): the update is found there.
func TestUpdateResultDiagLogPath(t *testing.T) {
	root, diag := t.TempDir(), t.TempDir()
	env := []string{"PATH=/bin", "AGENT_DIAGLOGPATH=" + diag}
	if got := diagDir(env, root); got != diag {
		t.Fatalf("diagDir = %s, want %s", got, diag)
	}
	os.WriteFile(filepath.Join(diag, "SelfUpdate-20261122-100000.log.succeed"), nil, 0o644)
	if r, ok := updateResult(diagDir(env, root), time.Now().Add(-time.Minute)); !ok || r != "succeed" {
		t.Fatalf("%q %v", r, ok)
	}
	if got := diagDir([]string{"AGENT_DIAGLOGPATH="}, root); got != filepath.Join(root, "_diag") {
		t.Errorf("an empty AGENT_DIAGLOGPATH: %s", got)
	}
}

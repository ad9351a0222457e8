//go:build linux

package fakeagent_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/fakeagent"
)

// The whole lifecycle: configure, run, a job, a job cancelled by SIGINT, remove.
func TestConfigureRunJobsRemove(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "agent-1")

	raw, err := os.ReadFile(filepath.Join(root, ".agent"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("\xef\xbb\xbf")) {
		t.Errorf(".agent has no UTF-8 BOM")
	}
	var settings map[string]any
	if err := json.Unmarshal(raw[3:], &settings); err != nil {
		t.Fatal(err)
	}
	a, ok := s.Agent("Default", "agent-1")
	if !ok {
		t.Fatal("agent not registered")
	}
	if settings["agentId"] != float64(a.ID) || settings["agentName"] != "agent-1" || settings["poolName"] != "Default" || settings["workFolder"] != "_work" || settings["acceptTeeEula"] != true {
		t.Errorf(".agent = %v", settings)
	}
	if _, ok := settings["disableLogUploads"]; ok {
		t.Errorf(".agent holds a default value: %v", settings)
	}
	creds, _ := os.ReadFile(filepath.Join(root, ".credentials"))
	if !strings.Contains(string(creds), `"scheme": "OAuth"`) || strings.Contains(string(creds), pat) {
		t.Errorf(".credentials = %s", creds)
	}
	if st, err := os.Stat(filepath.Join(root, ".credentials_rsaparams")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf(".credentials_rsaparams: %v %v", st.Mode(), err)
	}

	// The secret reaches run too (a careless supervisor); the job's worker must not inherit it.
	p := start(t, root, []string{"VSTS_AGENT_INPUT_TOKEN=" + pat, "FAKE_AGENT_ORPHAN_SECONDS=3"}, "run", "--startuptype", "service")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	waitAgent(t, s, "agent-1", func(a sim.AgentView) bool { return a.Status == "online" })

	id1, err := s.QueueJob(sim.JobSpec{Name: "quick", Duration: 300 * time.Millisecond, Orphans: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.waitOutput("Job quick completed with result: Succeeded", 1, 15*time.Second)
	if r := waitRequest(t, s, id1, finished); r.Result != "succeeded" || r.ReceiveTime.IsZero() {
		t.Errorf("request 1 = %+v", r)
	}
	checkOrphan(t, root)

	id2, err := s.QueueJob(sim.JobSpec{Name: "long", Duration: time.Minute, IgnoreCancel: 700 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.waitOutput("Running job: long", 1, 15*time.Second)
	var worker int
	for deadline := time.Now().Add(5 * time.Second); worker == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c := children(p.cmd.Process.Pid); len(c) > 0 {
			worker = c[0]
		}
	}
	if worker == 0 {
		t.Fatal("no Agent.Worker child")
	}
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(worker) + "/comm"); strings.TrimSpace(string(comm)) != "Agent.Worker" {
		t.Errorf("worker comm = %q", comm)
	}
	// Like the .NET agent, the listener only drops the variable from its runtime's copy of the
	// environment: /proc/<pid>/environ keeps the exec-time block, so a supervisor that leaks a
	// secret into `run` stays detectable there.
	if env := strings.Join(environ(t, p.cmd.Process.Pid), "\n"); !strings.Contains(env, "VSTS_AGENT_INPUT_TOKEN=") {
		t.Errorf("listener /proc environ lost VSTS_AGENT_INPUT_TOKEN; the real agent keeps it there")
	}
	for _, kv := range environ(t, worker) {
		if strings.HasPrefix(strings.ToUpper(kv), "VSTS_AGENT_INPUT_") {
			t.Errorf("worker environment holds %s", kv)
		}
	}
	start := time.Now()
	p.signal(syscall.SIGINT)
	time.Sleep(100 * time.Millisecond)
	p.signal(syscall.SIGINT) // a second SIGINT changes nothing
	if code, sig := p.wait(15 * time.Second); code != 0 || sig != 0 {
		t.Fatalf("exit %d signal %v:\n%s", code, sig, p.output())
	}
	if el := time.Since(start); el < 600*time.Millisecond {
		t.Errorf("listener exited after %v, before the job's cancel delay", el)
	}
	if !strings.Contains(p.output(), "Job long completed with result: Canceled") {
		t.Errorf("output:\n%s", p.output())
	}
	if r := waitRequest(t, s, id2, finished); r.Result != "canceled" {
		t.Errorf("request 2 = %+v", r)
	}
	waitAgent(t, s, "agent-1", func(a sim.AgentView) bool { return !a.HasSession })

	// remove needs credentials again; a read-only token fails and keeps the files.
	code, out := runSync(t, root, []string{"VSTS_AGENT_INPUT_TOKEN=" + patRead}, "remove", "--unattended")
	if code != 1 {
		t.Errorf("remove with read token: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(root, ".agent")); err != nil {
		t.Errorf("failed remove deleted .agent")
	}
	code, out = runSync(t, root, nil, "REMOVE", "--UNATTENDED", "--Auth", "PAT", "--Token", pat)
	if code != 0 || !strings.Contains(out, "Succeeded: Removing agent from the server") {
		t.Fatalf("remove: exit %d\n%s", code, out)
	}
	for _, f := range []string{".agent", ".credentials", ".credentials_rsaparams"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("%s still there after remove", f)
		}
	}
	if _, ok := s.Agent("Default", "agent-1"); ok {
		t.Error("agent still on the server")
	}
	code, out = runSync(t, root, nil, "remove", "--unattended", "--auth", "pat", "--token", pat)
	if code != 0 {
		t.Errorf("remove when not configured: exit %d\n%s", code, out)
	}
	code, out = runSync(t, root, nil, "run")
	if code != 1 || !strings.Contains(out, fakeagent.MsgNotConfigured) {
		t.Errorf("run when not configured: exit %d\n%s", code, out)
	}
}

func checkOrphan(t *testing.T, root string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(root, "_diag", "Worker_*.log"))
	re := regexp.MustCompile(`Started orphan process pid=(\d+)`)
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if m := re.FindSubmatch(b); m != nil {
			pid, _ := strconv.Atoi(string(m[1]))
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if !strings.Contains(string(cmdline), fakeagent.RoleOrphan) || !strings.Contains(string(cmdline), root) {
				t.Errorf("orphan %d cmdline %q", pid, cmdline)
			}
			return
		}
	}
	t.Error("no orphan process was started")
}

func TestConfigureErrors(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "dup")
	first, _ := s.Agent("Default", "dup")

	code, out := runSync(t, root, []string{"VSTS_AGENT_INPUT_TOKEN=" + pat}, "configure", "--unattended", "--url", s.OrgURL(), "--agent", "dup", "--pool", "Default")
	if code != 1 || !strings.Contains(out, fakeagent.MsgAlreadyConfig) {
		t.Errorf("already configured: exit %d\n%s", code, out)
	}

	other := extract(t)
	// VSTS_AGENT_INPUT_REPLACE=1 is not "true": no replace.
	code, out = runSync(t, other, []string{"VSTS_AGENT_INPUT_TOKEN=" + pat, "vsts_agent_input_replace=1"}, "configure", "--unattended", "--url", s.OrgURL(), "--agent", "dup", "--pool", "Default")
	if code != 1 || !strings.Contains(out, "Pool Default already contains an agent with name dup.") {
		t.Errorf("name taken: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(other, ".agent")); err == nil {
		t.Error(".agent written despite the failure")
	}
	code, out = runSync(t, other, []string{"VSTS_AGENT_INPUT_TOKEN=" + pat, "VSTS_AGENT_INPUT_REPLACE=true", "VSTS_AGENT_INPUT_URL=" + s.OrgURL()},
		"configure", "--unattended", "--agent", "dup", "--pool", "Default", "--frobnicate")
	if code != 0 || !strings.Contains(out, "Successfully replaced the agent") || !strings.Contains(out, "Unrecognized command-line input arguments: '--frobnicate'") {
		t.Errorf("replace: exit %d\n%s", code, out)
	}
	if strings.Contains(out, pat) {
		t.Error("the token was printed")
	}
	if a, _ := s.Agent("Default", "dup"); a.ID != first.ID {
		t.Errorf("replace changed the id: %d -> %d", first.ID, a.ID)
	}
	// The replaced instance's key no longer works: its run fails at session creation.
	code, out = runSync(t, root, nil, "run")
	if code != 1 || !strings.Contains(out, "Failed to create session.") {
		t.Errorf("run of the replaced instance: exit %d\n%s", code, out)
	}

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"pool", []string{"VSTS_AGENT_INPUT_TOKEN=" + pat}, []string{"--pool", "Nope"}, "Agent pool not found: 'Nope'"},
		{"token", []string{"VSTS_AGENT_INPUT_TOKEN=wrong"}, []string{"--pool", "Default"}, "VS30063"},
		{"missing token", nil, []string{"--pool", "Default"}, "Invalid configuration provided for token"},
		{"read token", []string{"VSTS_AGENT_INPUT_TOKEN=" + patRead}, []string{"--pool", "Default"}, "An error occurred"},
		{"sslcacert", []string{"VSTS_AGENT_INPUT_TOKEN=" + pat}, []string{"--pool", "Default", "--sslcacert", "missing.pem"}, "Invalid configuration provided for sslcacert"},
	} {
		dir := extract(t)
		args := append([]string{"configure", "--unattended", "--url", s.OrgURL(), "--agent", "x-" + strings.ReplaceAll(tc.name, " ", "-")}, tc.args...)
		code, out := runSync(t, dir, tc.env, args...)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want 1 and %q:\n%s", tc.name, code, tc.want, out)
		}
	}

	code, out = runSync(t, root, nil, "--version")
	if code != 0 || strings.TrimSpace(out) != oldVersion {
		t.Errorf("--version: %d %q", code, out)
	}
	if code, _ := runSync(t, root, nil, "warmup"); code != 0 {
		t.Errorf("warmup: exit %d", code)
	}
}

func TestMissingAgent(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "gone")

	// The server's answer, injected: 404 TaskAgentNotFoundException at session creation.
	if _, err := s.Fault(sim.FaultSpec{Method: "POST", PathRegexp: "/sessions", Status: 404, Count: 1,
		Body: `{"$id":"1","message":"No agent found in pool Default.","typeName":"Microsoft.TeamFoundation.DistributedTask.WebApi.TaskAgentNotFoundException, Microsoft.TeamFoundation.DistributedTask.WebApi","typeKey":"TaskAgentNotFoundException","errorCode":0,"eventId":3000}`}); err != nil {
		t.Fatal(err)
	}
	code, out := runSync(t, root, nil, "run")
	if code != 1 || !strings.Contains(out, fakeagent.MsgMissingAgent) {
		t.Errorf("injected: exit %d\n%s", code, out)
	}

	// The real thing: the agent deleted on the server.
	if err := s.DeleteAgent("Default", "gone"); err != nil {
		t.Fatal(err)
	}
	code, out = runSync(t, root, nil, "run")
	if code == 1 && strings.Contains(out, "invalid_client") && strings.Contains(out, "no agent has client id") {
		// The simulator's token endpoint (internal/sim/oauth.go, handleOAuthToken) refuses the client of a
		// deleted agent, so the session call that answers TaskAgentNotFoundException is never made.
		t.Skip("internal/sim/oauth.go refuses tokens for deleted agents, so the MissingAgent path is not reached; the injected 404 above covers it")
	}
	if code != 1 || !strings.Contains(out, fakeagent.MsgMissingAgent) {
		t.Errorf("exit %d\n%s", code, out)
	}
}

func TestSessionConflict(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "twice")
	p := start(t, root, nil, "run")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	began := time.Now()
	code, out := runSync(t, root, []string{"FAKE_AGENT_SESSION_RETRY=2s"}, "run")
	if code != 1 || !strings.Contains(out, fakeagent.MsgSessionExist) || !strings.Contains(out, "Stop retry on SessionConflictException after retried for 2 seconds.") {
		t.Errorf("exit %d\n%s", code, out)
	}
	if el := time.Since(began); el < 1500*time.Millisecond || el > 10*time.Second {
		t.Errorf("gave up after %v", el)
	}
	p.signal(syscall.SIGQUIT) // handled like SIGINT
	if code, sig := p.wait(10 * time.Second); code != 0 || sig != 0 {
		t.Errorf("first listener: exit %d signal %v", code, sig)
	}
}

func TestScriptedExits(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "scripted")
	env := []string{"FAKE_AGENT_RUN_EXITS=1,2,3,4,run"}
	for _, want := range []int{1, 2, 3, 4} {
		if code, out := runSync(t, root, env, "run"); code != want {
			t.Errorf("run %d: exit %d\n%s", want, code, out)
		}
	}
	// Exhausted: normal runs, scripted over the wire.
	for _, tc := range []struct {
		script map[string]any
		code   int
		sig    syscall.Signal
	}{
		{map[string]any{"exit": 2}, 2, 0},
		{map[string]any{"crash": "segv"}, -1, syscall.SIGSEGV},
		{map[string]any{"crash": true}, -1, syscall.SIGKILL},
	} {
		p := start(t, root, env, "run")
		p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
		if err := s.Script("scripted", tc.script); err != nil {
			t.Fatal(err)
		}
		code, sig := p.wait(15 * time.Second)
		if code != tc.code || sig != tc.sig {
			t.Errorf("%v: exit %d signal %v\n%s", tc.script, code, sig, p.output())
		}
		if tc.sig != 0 { // a crashed listener leaves its session behind until it expires
			waitAgent(t, s, "scripted", func(a sim.AgentView) bool { return a.Status == "offline" })
		}
	}
	// hang: SIGINT and SIGTERM do nothing, only SIGKILL ends it.
	p := start(t, root, env, "run")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	if err := s.Script("scripted", map[string]any{"hang": true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	p.signal(syscall.SIGINT)
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		t.Fatalf("hanging listener exited: %v\n%s", p.err, p.output())
	case <-time.After(500 * time.Millisecond):
	}
	p.signal(syscall.SIGKILL)
	if _, sig := p.wait(5 * time.Second); sig != syscall.SIGKILL {
		t.Errorf("signal %v", sig)
	}
}

func TestSigterm(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "term")

	// SIGTERM without a job: graceful, exit 0.
	p := start(t, root, nil, "run")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	p.signal(syscall.SIGTERM)
	if code, sig := p.wait(10 * time.Second); code != 0 || sig != 0 {
		t.Errorf("idle SIGTERM: exit %d signal %v", code, sig)
	}

	// SIGTERM with a job that ignores the cancel for longer than the cap: hard exit at the cap.
	p = start(t, root, []string{"FAKE_AGENT_SIGTERM_CAP=1s"}, "run")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	if _, err := s.QueueJob(sim.JobSpec{Name: "stubborn", Duration: time.Minute, IgnoreCancel: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	p.waitOutput("Running job: stubborn", 1, 15*time.Second)
	began := time.Now()
	p.signal(syscall.SIGTERM)
	code, sig := p.wait(10 * time.Second)
	if code != 143 || sig != 0 {
		t.Errorf("capped SIGTERM: exit %d signal %v", code, sig)
	}
	if el := time.Since(began); el < 900*time.Millisecond || el > 5*time.Second {
		t.Errorf("capped SIGTERM took %v", el)
	}
	// Its worker is left behind (the job had not finished): end it, it is ours.
	killWorkers(t, root)

	// net10: SIGTERM kills at once.
	waitAgent(t, s, "term", func(a sim.AgentView) bool { return a.Status == "offline" })
	p = start(t, root, []string{"FAKE_AGENT_NET10=true"}, "run")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	p.signal(syscall.SIGTERM)
	if _, sig := p.wait(5 * time.Second); sig != syscall.SIGTERM {
		t.Errorf("net10 SIGTERM: signal %v", sig)
	}
}

// killWorkers ends the Agent.Worker processes of this agent root (found through their diag logs).
func killWorkers(t *testing.T, root string) {
	logs, _ := filepath.Glob(filepath.Join(root, "_diag", "Worker_*.log"))
	re := regexp.MustCompile(`Agent.Worker pid=(\d+)`)
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		for _, m := range re.FindAllSubmatch(b, -1) {
			pid, _ := strconv.Atoi(string(m[1]))
			if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil && strings.HasPrefix(exe, root) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// --once: the server cancels the job (JobCancellation), the job ends Canceled, the listener exits 0.
func TestOnceServerCancel(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "once")
	p := start(t, root, []string{"VSTS_AGENT_INPUT_ONCE=True"}, "run")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	id, err := s.QueueJob(sim.JobSpec{Name: "doomed", Duration: time.Minute, Result: "failed"})
	if err != nil {
		t.Fatal(err)
	}
	p.waitOutput("Running job: doomed", 1, 15*time.Second)
	if err := s.CancelJob(id); err != nil {
		t.Fatal(err)
	}
	if code, sig := p.wait(15 * time.Second); code != 0 || sig != 0 {
		t.Fatalf("exit %d signal %v\n%s", code, sig, p.output())
	}
	if !strings.Contains(p.output(), "Job doomed completed with result: Canceled") {
		t.Errorf("output:\n%s", p.output())
	}
	if r := waitRequest(t, s, id, finished); r.Result != "canceled" {
		t.Errorf("request %+v", r)
	}

	// A failing job with --once: result Failed, exit 0.
	waitAgent(t, s, "once", func(a sim.AgentView) bool { return !a.HasSession })
	p = start(t, root, nil, "run", "--ONCE")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	id, err = s.QueueJob(sim.JobSpec{Name: "bad", Duration: 200 * time.Millisecond, Result: "failed"})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := p.wait(15 * time.Second); code != 0 || !strings.Contains(p.output(), "Job bad completed with result: Failed") {
		t.Errorf("exit %d\n%s", code, p.output())
	}
	if r := waitRequest(t, s, id, finished); r.Result != "failed" {
		t.Errorf("request %+v", r)
	}
}

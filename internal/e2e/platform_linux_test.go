package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs/ecstest"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets/smtest"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// On ECS: the name comes from task metadata, the token from Secrets Manager through the task
// role, scale-in protection is held during a job and released after it, and the listener gets
// neither the token nor the task role's credential variables.
func TestECSTaskWithSecretsManager(t *testing.T) {
	h := newHarness(t)
	task := ecstest.New(ecstest.Options{ContainerName: "agent"})
	t.Cleanup(task.Close)
	sm := smtest.New()
	t.Cleanup(sm.Close)
	env := task.Env()
	sm.AddCredentials(aws.Credentials{AccessKeyID: "ASIAECSTESTFAKEKEY01", SecretAccessKey: "ecstest/fake/secret/access/key/000000000"})
	secret, _ := json.Marshal(map[string]string{"AZP_TOKEN": h.token, "AZP_POOL": "Default"})
	sm.PutSecret("azp-agent", string(secret))

	in := h.instance("unused")
	delete(in.env, "AZP_TOKEN")
	delete(in.env, "AZP_POOL")
	delete(in.env, "AZP_AGENT_NAME")
	in.env["AZP_AGENT_NAME_PREFIX"] = "ecs-"
	in.env["AZP_SECRET_ID"] = smtest.ARN("azp-agent")
	in.env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = sm.URL()
	for k, v := range env {
		in.env[k] = v
	}
	in.name = "ecs-" + task.TaskID() + "-agent"

	r := in.start()
	in.waitOnline(30 * time.Second)
	id := h.queue(sim.JobSpec{Name: "protected", Duration: 2 * time.Second})
	h.waitRequest(id, 10*time.Second, running)
	r.waitLog("Running job", 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for !task.Protected() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !task.Protected() {
		t.Fatal("no scale-in protection while the job runs")
	}
	ls := in.listeners()
	if len(ls) != 1 {
		t.Fatalf("%d listeners", len(ls))
	}
	environ, _ := os.ReadFile("/proc/" + itoa(ls[0]) + "/environ")
	for _, kv := range strings.Split(string(environ), "\x00") {
		if strings.HasPrefix(kv, "AWS_CONTAINER_") || strings.HasPrefix(kv, "AZP_") || strings.Contains(kv, h.token) {
			t.Fatalf("listener environment holds %q", strings.SplitN(kv, "=", 2)[0])
		}
	}
	h.waitRequest(id, 15*time.Second, finished)
	deadline = time.Now().Add(5 * time.Second)
	for task.Protected() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	changes := task.ProtectionChanges()
	if len(changes) < 2 || !changes[0].Enabled || changes[len(changes)-1].Enabled {
		t.Fatalf("protection changes %+v, want on during the job and off after", changes)
	}
	r.stopCleanly()
	// The secret was read at start and again for the deregistration.
	if n := len(sm.Calls()); n < 2 {
		t.Fatalf("%d Secrets Manager calls, want the start and the deregistration", n)
	}
}

// Two entrypoints share one work volume: each leases its own slot, and both run side by side.
func TestSharedWorkVolume(t *testing.T) {
	h := newHarness(t)
	shared := filepath.Join(h.root, "shared-work")
	var runs []*run
	var ins []*instance
	for _, name := range []string{"e2e-shared-a", "e2e-shared-b"} {
		in := h.instance(name)
		in.env["AZP_WORK"] = shared
		in.env["AZP_WORK_SHARED"] = "true"
		ins = append(ins, in)
		runs = append(runs, in.start())
	}
	folders := map[string]bool{}
	for _, in := range ins {
		in.waitOnline(40 * time.Second)
		data, err := os.ReadFile(filepath.Join(in.agentDir, ".agent"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct{ WorkFolder string }
		json.Unmarshal([]byte(strings.TrimPrefix(string(data), "\ufeff")), &cfg)
		if filepath.Dir(cfg.WorkFolder) != shared || !strings.HasPrefix(filepath.Base(cfg.WorkFolder), "slot-") {
			t.Fatalf("%s works in %q, want a slot of %s", in.name, cfg.WorkFolder, shared)
		}
		folders[cfg.WorkFolder] = true
	}
	if len(folders) != 2 {
		t.Fatalf("the agents share a work folder: %v", folders)
	}
	for i, r := range runs {
		r.signal(syscall.SIGTERM)
		if code := r.wait(15 * time.Second); code != 0 {
			t.Fatalf("%s exit code %d", ins[i].name, code)
		}
	}
}

// A stop while the agent is being configured aborts it and removes whatever was registered.
func TestStopDuringConfigure(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-stop-configure")
	// The configure's connection test (after the agent is added) hangs.
	if _, err := h.sim.Fault(sim.FaultSpec{Method: "POST", PathRegexp: "/_sim/oauth2/token", Delay: time.Minute}); err != nil {
		t.Fatal(err)
	}
	r := in.start()
	r.waitLog("configuring the agent", 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.sim.WaitAgent(ctx, "Default", in.name, func(a sim.AgentView) bool { return a.ID != 0 }); err != nil {
		t.Fatalf("the agent was never added: %v", err)
	}
	code := r.stopWithin(5 * time.Second)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	in.assertRegistered(false)
}

// The server deleted the agent behind our back: the listener reports MissingAgent, the entrypoint
// configures it again once and carries on.
func TestMissingAgentReconfigures(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-missing")
	r := in.start()
	before := in.waitOnline(30 * time.Second)
	// The listener's next session attempt finds no agent (as after a deletion in the portal).
	if err := h.sim.DeleteAgent("Default", in.name); err != nil {
		t.Fatal(err)
	}
	r.waitLog("configuring it again", 60*time.Second)
	after := in.waitOnline(30 * time.Second)
	if after.ID == before.ID {
		t.Fatalf("expected a new registration after the deletion")
	}
	r.stopCleanly()
}

// A non-root entrypoint (the ECS task's `user`) works, and a job running as the same uid cannot
// read the entrypoint's environment, where the token is.
func TestNonRootEntrypoint(t *testing.T) {
	h := newHarness(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) is not installed")
	}
	in := h.instance("e2e-non-root")
	for _, d := range []string{filepath.Dir(in.agentDir), in.agentDir, in.stateDir} {
		os.MkdirAll(d, 0o755)
		os.Chown(d, 4321, 4321)
	}
	r := in.startWith([]string{"setpriv", "--reuid", "4321", "--regid", "4321", "--clear-groups", "--"})
	in.waitOnline(30 * time.Second)
	pid := r.pid()
	// pid is setpriv's, which exec'd the entrypoint in place.
	read := exec.Command("setpriv", "--reuid", "4321", "--regid", "4321", "--clear-groups", "cat", "/proc/"+itoa(pid)+"/environ")
	out, err := read.CombinedOutput()
	if err == nil || strings.Contains(string(out), h.token) {
		t.Fatalf("a process of the same uid read the entrypoint's environment (err %v)", err)
	}
	r.stopCleanly()
}

// AZP_DEREGISTER=false keeps the registration across restarts: the second start reuses the
// configuration (no configure), enables the agent again and keeps its ID.
func TestKeepRegistration(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-keep")
	in.env["AZP_DEREGISTER"] = "false"
	r := in.start()
	before := in.waitOnline(30 * time.Second)
	r.stopCleanly()
	kept, ok := h.sim.Agent("Default", in.name)
	if !ok || kept.ID != before.ID || kept.Enabled {
		t.Fatalf("after the stop: %+v (registered %v), want the same agent, disabled while stopped", kept, ok)
	}
	r2 := in.start()
	r2.waitLog("reusing the agent's configuration", 30*time.Second)
	after := in.waitOnline(30 * time.Second)
	if after.ID != before.ID || !after.Enabled {
		t.Fatalf("after the restart: %+v, want agent %d enabled", after, before.ID)
	}
	if n := r2.countLogs("configuring the agent"); n != 0 {
		t.Fatal("the agent was configured again")
	}
	r2.stopCleanly()
}

// Started as root in an image with an `agent` user, the listener runs as `agent` with that user's
// groups (AZP_RUN_AS unset), never with root's.
func TestDefaultAgentUser(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-agent-user")
	etc := filepath.Join(h.root, "etc")
	os.MkdirAll(etc, 0o755)
	os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nagent:x:4321:4322:agent:/home/agent:/bin/bash\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "group"), []byte("root:x:0:\nagent:x:4322:\ndocker:x:4323:agent\nwheel:x:10:root\n"), 0o644)
	// PID 1 is a shell that bind-mounts the image's user database and execs the entrypoint.
	script := "mount --bind " + etc + "/passwd /etc/passwd && mount --bind " + etc + "/group /etc/group && exec " + bins.entrypoint
	r := in.startWith([]string{"sh", "-c", script, "--"})
	in.waitOnline(30 * time.Second)
	ls := in.listeners()
	if len(ls) != 1 {
		t.Fatalf("%d listeners", len(ls))
	}
	status, _ := os.ReadFile("/proc/" + itoa(ls[0]) + "/status")
	want := map[string]string{"Uid:": "4321 4321 4321 4321", "Gid:": "4322 4322 4322 4322", "Groups:": "4322 4323"}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && want[f[0]] != "" {
			if got := strings.Join(f[1:], " "); got != want[f[0]] {
				t.Errorf("listener %s %s, want %s", f[0], got, want[f[0]])
			}
		}
	}
	r.stopCleanly()
}

// A SIGKILLed container leaves its agent offline; `prune` removes it once it has been offline long
// enough, and leaves online agents and other names alone.
func TestPruneRemovesGhost(t *testing.T) {
	h := newHarness(t)
	ghost := h.instance("e2e-ghost-1")
	live := h.instance("e2e-ghost-2")
	r := ghost.start()
	ghost.waitOnline(30 * time.Second)
	r2 := live.start()
	live.waitOnline(30 * time.Second)
	if err := h.sim.SeedAgents("Default", 1, "offline", time.Now().Add(-48*time.Hour), "other-"); err != nil {
		t.Fatal(err)
	}
	r.signal(syscall.SIGKILL)
	r.wait(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Offline for longer than prune's --offline-for 1s.
	if _, err := h.sim.WaitAgent(ctx, "Default", ghost.name, func(a sim.AgentView) bool {
		return a.Status == "offline" && time.Since(a.StatusChangedOn) > 1500*time.Millisecond
	}); err != nil {
		t.Fatalf("the killed agent never went offline: %v", err)
	}
	cmd := exec.Command(bins.entrypoint, "prune", "--prefix", "e2e-ghost-", "--offline-for", "1s")
	cmd.Env = []string{"AZP_URL=" + h.url, "AZP_TOKEN=" + h.token, "AZP_LOG_FORMAT=text"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	ghost.assertRegistered(false)
	live.assertRegistered(true)
	if _, ok := h.sim.Agent("Default", "other-0"); !ok {
		t.Fatal("prune removed an agent outside the prefix")
	}
	if strings.Contains(string(out), h.token) {
		t.Fatal("the token appears in prune's output")
	}
	r2.stopCleanly()
}

// Configuration that fails after the agent was added (here its connection test) leaves no agent
// behind: the entrypoint removes what carries its name and exits 1.
func TestConfigureFailureLeavesNoGhost(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-configure-fails")
	if _, err := h.sim.Fault(sim.FaultSpec{Method: "POST", PathRegexp: "/_sim/oauth2/token", Status: 500}); err != nil {
		t.Fatal(err)
	}
	r := in.start()
	if code := r.wait(40 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	r.waitLog("agent deregistered", time.Second)
	in.assertRegistered(false)
}

// A reconfiguration (here after the agent was deleted on the server, which a job could provoke)
// runs the configure process, with the token in its environment, only after everything jobs left
// behind has ended: nothing of a job's can read that environment.
func TestReconfigureEndsJobLeftoversFirst(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-leftovers")
	in.env["FAKE_AGENT_ORPHAN_SECONDS"] = "300"
	r := in.start()
	in.waitOnline(30 * time.Second)
	id := h.queue(sim.JobSpec{Name: "leaves-daemons", Duration: 300 * time.Millisecond, Orphans: 2})
	h.waitRequest(id, 15*time.Second, finished)
	if n := len(in.orphans()); n != 2 {
		t.Fatalf("%d job leftovers running, want 2", n)
	}
	if err := h.sim.DeleteAgent("Default", in.name); err != nil {
		t.Fatal(err)
	}
	rec := r.waitLog("ended processes left behind by jobs", 60*time.Second)
	if rec["count"] != float64(2) {
		t.Fatalf("ended %v leftovers, want 2", rec["count"])
	}
	in.waitOnline(30 * time.Second)
	if n := len(in.orphans()); n != 0 {
		t.Fatalf("%d job leftovers survived the reconfiguration", n)
	}
	var killedAt, configuredAt int
	for i, rec := range r.records() {
		switch msg, _ := rec["msg"].(string); {
		case strings.Contains(msg, "ended processes left behind"):
			killedAt = i
		case strings.Contains(msg, "configuring the agent"):
			configuredAt = i
		}
	}
	if killedAt > configuredAt {
		t.Fatal("the leftovers were ended after the configure process started")
	}
	r.stopCleanly()
}

// A token given as a flag is erased from the entrypoint's command line, which /proc shows to every
// process of the same user (jobs included), and it still works.
func TestTokenFlagErasedFromCommandLine(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-token-flag")
	delete(in.env, "AZP_TOKEN")
	r := in.start("--token", h.token)
	in.waitOnline(30 * time.Second)
	cmdline, err := os.ReadFile("/proc/" + itoa(r.pid()) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cmdline), h.token) || !strings.Contains(string(cmdline), "--token") {
		t.Fatalf("command line %q: the token must be erased (the flag itself stays)", cmdline)
	}
	// unshare, the test's launcher, still shows it: a container runtime execs the entrypoint itself.
	for _, pid := range procs(h.token) {
		if pid != r.cmd.Process.Pid {
			t.Fatalf("token in the command line of pid %d", pid)
		}
	}
	r.stopCleanly()
}

package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// jobUID is the agent's (and so every job's) uid in the attack tests.
const jobUID = 4321

// asJob makes path look as if a job made it: owned by the agent's uid, without following links.
func asJob(t *testing.T, path string) {
	t.Helper()
	if err := os.Lchown(path, jobUID, jobUID); err != nil {
		t.Fatal(err)
	}
}

// TestAttackSharedVolumeSlots is issue 11's shared-volume attack: on a work volume several agents
// share, a job plants a symlink at slot-0, a FIFO at slot-1.lock and a hard link at slot-2.lock
// (to a file root must not write). The next agent starts anyway, on slot 3, with a warning naming
// each, and nothing planted is followed or written.
func TestAttackSharedVolumeSlots(t *testing.T) {
	h := newHarness(t)
	shared := filepath.Join(h.root, "shared-work")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	victimDir := filepath.Join(h.root, "victim-dir")
	os.Mkdir(victimDir, 0o755)
	victim := filepath.Join(shared, "job-file")
	if err := os.WriteFile(victim, []byte("job's"), 0o644); err != nil {
		t.Fatal(err)
	}
	asJob(t, victim)
	if err := os.Symlink(victimDir, filepath.Join(shared, "slot-0")); err != nil {
		t.Fatal(err)
	}
	asJob(t, filepath.Join(shared, "slot-0"))
	if err := syscall.Mkfifo(filepath.Join(shared, "slot-1.lock"), 0o666); err != nil {
		t.Fatal(err)
	}
	asJob(t, filepath.Join(shared, "slot-1.lock"))
	if err := os.Link(victim, filepath.Join(shared, "slot-2.lock")); err != nil {
		t.Fatal(err)
	}

	in := h.instance("e2e-attack-slots")
	in.env["AZP_WORK"] = shared
	in.env["AZP_WORK_SHARED"] = "true"
	in.env["AZP_RUN_AS"] = "4321:4321"
	r := in.start()
	in.waitOnline(40 * time.Second)
	data, err := os.ReadFile(filepath.Join(in.agentDir, ".agent"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), filepath.Join(shared, "slot-3")) {
		t.Errorf(".agent does not name slot-3 as the work folder: %s", data)
	}
	out := r.out.String()
	for _, name := range []string{"slot-0", "slot-1.lock", "slot-2.lock"} {
		if !strings.Contains(out, filepath.Join(shared, name)+": slot is held (skipped") {
			t.Errorf("no warning names %s", name)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "job's" {
		t.Errorf("root wrote through the hard-linked lock: %q", b)
	}
	if ents, _ := os.ReadDir(victimDir); len(ents) != 0 {
		t.Errorf("root wrote through the slot symlink: %v", ents)
	}
	r.stopCleanly()
}

// job runs a shell script as a job would: a process of the agent's uid inside the entrypoint's
// PID and mount namespaces. It returns the script's output.
func (r *run) job(script string) string {
	r.in.h.t.Helper()
	cmd := exec.Command("nsenter", "--target", strconv.Itoa(r.pid()), "--pid", "--mount", "--",
		"setpriv", "--reuid", strconv.Itoa(jobUID), "--regid", strconv.Itoa(jobUID), "--clear-groups", "sh", "-c", script)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// rootInstance is an instance in root mode: the entrypoint is root, the agent and jobs jobUID.
func rootInstance(h *harness, name string) *instance {
	in := h.instance(name)
	in.env["AZP_RUN_AS"] = fmt.Sprintf("%d:%d", jobUID, jobUID)
	return in
}

// tokenHolders lists the processes on the machine (but unshare, which started the namespace with
// the test's environment) whose environment block holds the token.
func tokenHolders(r *run, token string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == r.cmd.Process.Pid || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err == nil && bytes.Contains(b, []byte(token)) {
			cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			out = append(out, fmt.Sprintf("%d %q", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return out
}

// TestAttackPlantedListenerAndDeletedConfig is issue 11's compose attack: a job replaces
// bin/Agent.Listener, deletes .agent, plants .env and kills the listener so that the entrypoint
// reconfigures with the PAT in a child's environment. In root mode the tree is root's: every write
// fails, the genuine listener is relaunched with the same registration, and no process but the
// entrypoint ever holds the token.
func TestAttackPlantedListenerAndDeletedConfig(t *testing.T) {
	h := newHarness(t)
	in := rootInstance(h, "e2e-attack-plant")
	r := in.start()
	before := in.waitOnline(40 * time.Second)
	listener := filepath.Join(in.agentDir, "bin", "Agent.Listener")
	orig, err := os.ReadFile(listener)
	if err != nil {
		t.Fatal(err)
	}
	out := r.job(fmt.Sprintf(`cd %q || exit 1
cp /bin/sh bin/Agent.Listener 2>/dev/null && echo PLANTED
rm -f bin/Agent.Listener 2>/dev/null; [ -e bin/Agent.Listener ] || echo REMOVED
rm -f .agent 2>/dev/null; [ -e .agent ] || echo DELETED
echo 'VSTS_HTTP_PROXY=http://127.0.0.1:9' > .env 2>/dev/null && echo ENV
cat .credentials_rsaparams >/dev/null 2>&1 && echo KEY-READABLE
kill -9 %d && echo KILLED`, in.agentDir, nsPID(t, in.listeners()[0])))
	for _, bad := range []string{"PLANTED", "REMOVED", "DELETED", "ENV"} {
		if strings.Contains(out, bad) {
			t.Errorf("the job could change the agent tree (%s): %s", bad, out)
		}
	}
	if !strings.Contains(out, "KILLED") {
		t.Fatalf("the job could not kill the listener (it shares its uid): %s", out)
	}
	// The listener reads its key, so a job (same uid) can too: inherent, documented.
	if !strings.Contains(out, "KEY-READABLE") {
		t.Errorf("the listener's key is not readable by its uid, so the listener cannot read it either: %s", out)
	}
	r.waitLog("listener started", 30*time.Second)
	deadline := time.Now().Add(40 * time.Second)
	for r.countLogs("listener started") < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	after := in.waitOnline(40 * time.Second)
	if after.ID != before.ID {
		t.Errorf("agent id %d after the attack, want the same registration %d", after.ID, before.ID)
	}
	if now, _ := os.ReadFile(listener); !bytes.Equal(now, orig) {
		t.Error("bin/Agent.Listener changed")
	}
	if holders := tokenHolders(r, h.token); len(holders) > 0 {
		t.Errorf("processes holding the PAT in their environment: %v", holders)
	}
	r.stopCleanly()
}

// lootScript is a job's daemon: a chain in which each link reads every /proc/*/environ it can,
// keeps what mentions the token's variable, starts the next link and exits, so that one pass of
// "kill every process below PID 1" always misses the newest link.
const lootScript = `#!/bin/sh
# azp-e2e-loot
for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f" 2>/dev/null; done | grep -a -e AZP_TOKEN -e VSTS_AGENT_INPUT >> "$1"
"$0" "$1" &
exit 0
`

// TestAttackForkingChainsDuringReRegistration is the variant with the genuine binaries: the job
// leaves chains that keep forking and reading /proc/*/environ, and the agent is deleted on the
// server (MissingAgent) so that the entrypoint registers again. The registration happens in the
// entrypoint itself, the chains are frozen and killed before it and before the next listener, and
// nothing they read holds the token.
func TestAttackForkingChainsDuringReRegistration(t *testing.T) {
	h := newHarness(t)
	in := rootInstance(h, "e2e-attack-chains")
	r := in.start()
	before := in.waitOnline(40 * time.Second)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	script := filepath.Join(dir, "loot.sh")
	loot := filepath.Join(dir, "loot")
	if err := os.WriteFile(script, []byte(lootScript), 0o755); err != nil {
		t.Fatal(err)
	}
	r.job(fmt.Sprintf("setsid %q %q >/dev/null 2>&1 & setsid %q %q >/dev/null 2>&1 &", script, loot, script, loot))
	deadline := time.Now().Add(20 * time.Second)
	for len(procs("azp-e2e-loot")) == 0 && len(procs(script)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := h.sim.DeleteAgent("Default", in.name); err != nil {
		t.Fatal(err)
	}
	r.waitLog("ended processes left behind by jobs", 60*time.Second)
	after := in.waitOnline(40 * time.Second)
	if after.ID == before.ID {
		t.Errorf("no new registration after the deletion")
	}
	if b, _ := os.ReadFile(loot); bytes.Contains(b, []byte(h.token)) {
		t.Errorf("the job's chain read the PAT: %s", b)
	}
	// The chain is gone for good.
	for _, pid := range procs(script) {
		if procState(pid) != 'Z' {
			t.Errorf("a link of the chain survived: pid %d", pid)
		}
	}
	if holders := tokenHolders(r, h.token); len(holders) > 0 {
		t.Errorf("processes holding the PAT in their environment: %v", holders)
	}
	r.stopCleanly()
}

// TestAttackSymlinkedAgentDir is issue 11's third attack: /azp belongs to the agent, and a job
// replaced /azp/agent by a link to a directory root owns (a stand-in for /usr/local). The next
// start refuses with a configuration error naming the link; nothing is installed through it.
func TestAttackSymlinkedAgentDir(t *testing.T) {
	h := newHarness(t)
	in := rootInstance(h, "e2e-attack-agentdir")
	azp := filepath.Dir(in.agentDir)
	if err := os.MkdirAll(azp, 0o755); err != nil {
		t.Fatal(err)
	}
	asJob(t, azp)
	victim := filepath.Join(h.root, "usr-local")
	os.MkdirAll(filepath.Join(victim, "bin"), 0o755)
	standin := filepath.Join(victim, "bin", "azp-entrypoint")
	if err := os.WriteFile(standin, []byte("the entrypoint"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, in.agentDir); err != nil {
		t.Fatal(err)
	}
	asJob(t, in.agentDir)
	r := in.start()
	if code := r.wait(60 * time.Second); code != 2 {
		t.Fatalf("exit code %d, want 2 (configuration)", code)
	}
	if !strings.Contains(r.out.String(), "symbolic link owned by uid 4321") {
		t.Errorf("the error does not name the job's link:\n%s", r.out.String())
	}
	if b, err := os.ReadFile(standin); err != nil || string(b) != "the entrypoint" {
		t.Errorf("root changed the directory behind the link: %q %v", b, err)
	}
	if ents, _ := os.ReadDir(victim); len(ents) != 1 {
		t.Errorf("root installed through the link: %v", ents)
	}
	in.assertRegistered(false)
}

// TestAttackPlantedEnvWithProxy: a .env in the agent root (here left on a persistent volume by an
// earlier version, which gave the tree to the agent) names a proxy and turns off certificate
// checks; the listener would load it at its next start (Program.cs). The entrypoint removes it
// before every start, names it in a warning, and the proxy sees no connection.
func TestAttackPlantedEnvWithProxy(t *testing.T) {
	h := newHarness(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var hits atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	in := rootInstance(h, "e2e-attack-env")
	r := in.start()
	in.waitOnline(40 * time.Second)
	env := filepath.Join(in.agentDir, ".env")
	proxy := "http://" + ln.Addr().String()
	if err := os.WriteFile(env, []byte("VSTS_HTTP_PROXY="+proxy+"\nhttp_proxy="+proxy+"\nVSTS_AGENT_INPUT_SSLSKIPCERTVALIDATION=true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	asJob(t, env)
	if err := os.WriteFile(filepath.Join(in.agentDir, ".proxy"), []byte(proxy), 0o644); err != nil {
		t.Fatal(err)
	}
	asJob(t, filepath.Join(in.agentDir, ".proxy"))
	r.job(fmt.Sprintf("kill -9 %d", nsPID(t, in.listeners()[0])))
	r.waitLog("removed a file the entrypoint did not write", 30*time.Second)
	deadline := time.Now().Add(40 * time.Second)
	for r.countLogs("listener started") < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	in.waitOnline(40 * time.Second)
	// A poll round trip of the relaunched listener has gone to the server itself.
	id := h.queue(sim.JobSpec{Agent: in.name, Duration: 100 * time.Millisecond})
	h.waitRequest(id, 30*time.Second, finished)
	if n := hits.Load(); n != 0 {
		t.Errorf("the planted proxy got %d connections", n)
	}
	for _, f := range []string{".env", ".proxy"} {
		if _, err := os.Lstat(filepath.Join(in.agentDir, f)); err == nil {
			t.Errorf("%s is still in the agent root", f)
		}
	}
	r.stopCleanly()
}

// nsPID is a process's PID in its own (innermost) PID namespace, from the NSpid line of its status.
func nsPID(t *testing.T, hostPID int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", hostPID))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	t.Fatalf("no NSpid in /proc/%d/status", hostPID)
	return 0
}

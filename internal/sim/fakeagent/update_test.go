//go:build linux

package fakeagent_test

import (
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

// waitSelfUpdate waits for the n-th _diag/SelfUpdate-*.log.succeed and returns its content.
func waitSelfUpdate(t *testing.T, root string, n int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		m, _ := filepath.Glob(filepath.Join(root, "_diag", "SelfUpdate-*.log.succeed"))
		if len(m) >= n {
			var all strings.Builder
			for _, f := range m {
				b, _ := os.ReadFile(f)
				all.Write(b)
			}
			return all.String()
		}
		if f, _ := filepath.Glob(filepath.Join(root, "_diag", "SelfUpdate-*.log.failed")); len(f) > 0 {
			b, _ := os.ReadFile(f[0])
			t.Fatalf("self-update failed:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var diag strings.Builder
	logs, _ := filepath.Glob(filepath.Join(root, "_diag", "*"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		diag.WriteString("==> " + filepath.Base(l) + "\n" + string(b))
	}
	t.Fatalf("no self-update log #%d\n%s", n, diag.String())
	return ""
}

func version(t *testing.T, root string) string {
	t.Helper()
	code, out := runSync(t, root, nil, "--version")
	if code != 0 {
		t.Fatalf("--version: exit %d", code)
	}
	return strings.TrimSpace(out)
}

func TestSelfUpdate(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "upd")

	// 1. --startuptype service: exit 3, the updater swaps bin and starts nothing.
	p := start(t, root, nil, "run", "--startuptype", "service")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	if err := s.RequestUpdate("upd", "4.261.0"); err != nil {
		t.Fatal(err)
	}
	if code, sig := p.wait(15 * time.Second); code != 3 || sig != 0 {
		t.Fatalf("exit %d signal %v\n%s", code, sig, p.output())
	}
	if !strings.Contains(p.output(), fakeagent.MsgUpdateExit) {
		t.Errorf("output:\n%s", p.output())
	}
	log := waitSelfUpdate(t, root, 1)
	if strings.Contains(log, "Restarted agent") {
		t.Errorf("service mode relaunched the agent:\n%s", log)
	}
	if target, err := os.Readlink(filepath.Join(root, "bin")); err != nil || target != "bin.4.261.0" {
		t.Errorf("bin -> %q (%v)", target, err)
	}
	if _, err := os.Stat(filepath.Join(root, "bin."+oldVersion, "Agent.Listener")); err != nil {
		t.Errorf("old bin not kept: %v", err)
	}
	if v := version(t, root); v != "4.261.0" {
		t.Errorf("--version after update = %q", v)
	}

	// 2. --once: exit 4.
	p = start(t, root, nil, "run", "--once", "--startuptype", "service")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	if err := s.RequestUpdate("upd", "4.262.0"); err != nil {
		t.Fatal(err)
	}
	if code, _ := p.wait(15 * time.Second); code != 4 {
		t.Fatalf("--once update: exit %d\n%s", code, p.output())
	}
	log = waitSelfUpdate(t, root, 2)
	if strings.Contains(log, "Restarted agent") {
		t.Errorf("--once relaunched the agent:\n%s", log)
	}
	if v := version(t, root); v != "4.262.0" {
		t.Errorf("--version after second update = %q", v)
	}

	// 3. Without --startuptype service the updater starts run.sh itself: a second listener.
	p = start(t, root, nil, "run")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	if err := s.RequestUpdate("upd", "4.263.0"); err != nil {
		t.Fatal(err)
	}
	if code, _ := p.wait(15 * time.Second); code != 3 {
		t.Fatalf("manual update: exit %d\n%s", code, p.output())
	}
	log = waitSelfUpdate(t, root, 3)
	m := regexp.MustCompile(`Restarted agent: bash pid=(\d+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("updater did not relaunch the agent:\n%s", log)
	}
	bash, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { // on failure: end the relaunched agent, which this test caused
		for _, c := range children(bash) {
			syscall.Kill(c, syscall.SIGKILL)
		}
	})
	// The relaunched listener writes to the inherited stdout: our output file.
	p.waitLaterOutput(fakeagent.MsgListening, 2, 15*time.Second)
	var relaunched int
	for deadline := time.Now().Add(5 * time.Second); relaunched == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c := children(bash); len(c) > 0 {
			relaunched = c[0]
		}
	}
	if relaunched == 0 {
		t.Fatalf("run.sh (pid %d) has no listener child", bash)
	}
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(relaunched) + "/exe"); !strings.HasPrefix(exe, filepath.Join(root, "bin.4.263.0")) {
		t.Errorf("relaunched listener runs %q", exe)
	}
	waitAgent(t, s, "upd", func(a sim.AgentView) bool { return a.HasSession })
	if err := syscall.Kill(relaunched, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitGone(t, relaunched, 10*time.Second)
	waitGone(t, bash, 10*time.Second)
}

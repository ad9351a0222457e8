//go:build linux

package fakeagent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

const (
	pat        = "pat-manage-fake-agent-0123456789"
	patRead    = "pat-read-fake-agent-0123456789"
	oldVersion = "4.260.0"
)

var (
	simBinary string // the azp-sim binary built once for all tests
	pkgPath   string // a good fake agent package of oldVersion
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "fakeagent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	simBinary = filepath.Join(dir, "azp-sim")
	build := exec.Command("go", "build", "-o", simBinary, "github.com/azp-entrypoint/azp-entrypoint/cmd/azp-sim")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build azp-sim:", err)
		return 1
	}
	res, err := pkgbuild.Build(pkgbuild.Options{Version: oldVersion, AgentBinary: simBinary, OutDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "build package:", err)
		return 1
	}
	pkgPath = res.Path
	return m.Run()
}

// startSim starts an in-process simulator with a manage and a read PAT.
func startSim(t *testing.T) *sim.Server {
	t.Helper()
	return sim.StartForTest(t, sim.Options{
		PollTimeout:  300 * time.Millisecond,
		OfflineAfter: 3 * time.Second,
		Tokens:       map[string]string{pat: sim.ScopeManage, patRead: sim.ScopeRead},
	})
}

// extract unpacks the test package into a new agent root.
func extract(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	f, err := os.Open(pkgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return root
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(w, tr); err != nil {
				t.Fatal(err)
			}
			w.Close()
		}
	}
}

// proc is a fake listener started by a test. Its stdout and stderr go to one file, so Wait returns as
// soon as the process exits, even when its updater still holds the descriptors.
type proc struct {
	t    *testing.T
	root string
	cmd  *exec.Cmd
	out  string
	done chan struct{}
	err  error
}

func start(t *testing.T, root string, env []string, args ...string) *proc {
	t.Helper()
	outFile, err := os.CreateTemp(t.TempDir(), "listener-*.out")
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(filepath.Join(root, "bin", "Agent.Listener"), args...)
	c.Dir = root
	c.Env = append(os.Environ(), "AGENT_ALLOW_RUNASROOT=1")
	c.Env = append(c.Env, env...)
	c.Stdout, c.Stderr = outFile, outFile
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	outFile.Close()
	p := &proc{t: t, root: root, cmd: c, out: outFile.Name(), done: make(chan struct{})}
	go func() {
		p.err = c.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			c.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.out)
	return string(b)
}

// diag returns the agent's _diag logs, for failure messages.
func (p *proc) diag() string {
	var b strings.Builder
	logs, _ := filepath.Glob(filepath.Join(p.root, "_diag", "*"))
	for _, l := range logs {
		c, _ := os.ReadFile(l)
		fmt.Fprintf(&b, "==> %s\n%s", filepath.Base(l), c)
	}
	return b.String()
}

// waitOutput waits until the output contains s n times (n >= 1).
func (p *proc) waitOutput(s string, n int, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Count(p.output(), s) >= n {
			return
		}
		select {
		case <-p.done:
			if strings.Count(p.output(), s) >= n {
				return
			}
			p.t.Fatalf("listener exited (%v) before printing %q:\n%s", p.err, s, p.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	p.t.Fatalf("no %q within %v:\n%s\n%s", s, timeout, p.output(), p.diag())
}

// waitLaterOutput is waitOutput for output written after the listener exited (by processes that
// inherited its stdout, like the updater's relaunch).
func (p *proc) waitLaterOutput(s string, n int, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Count(p.output(), s) >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.t.Fatalf("no %q (x%d) within %v:\n%s\n%s", s, n, timeout, p.output(), p.diag())
}

// wait returns the exit code (-1 and the signal when killed by one).
func (p *proc) wait(timeout time.Duration) (int, syscall.Signal) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("listener did not exit within %v:\n%s", timeout, p.output())
	}
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return -1, ws.Signal()
	}
	return ws.ExitStatus(), 0
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// runSync runs the listener to completion and returns exit code and output.
func runSync(t *testing.T, root string, env []string, args ...string) (int, string) {
	t.Helper()
	p := start(t, root, env, args...)
	code, sig := p.wait(60 * time.Second)
	if sig != 0 {
		t.Fatalf("listener killed by %v:\n%s", sig, p.output())
	}
	return code, p.output()
}

func configure(t *testing.T, s *sim.Server, root, name string, extra ...string) {
	t.Helper()
	args := append([]string{"configure", "--unattended", "--url", s.OrgURL(), "--pool", "Default", "--agent", name, "--acceptTeeEula"}, extra...)
	code, out := runSync(t, root, []string{"VSTS_AGENT_INPUT_TOKEN=" + pat}, args...)
	if code != 0 {
		t.Fatalf("configure exit %d:\n%s", code, out)
	}
}

func waitAgent(t *testing.T, s *sim.Server, name string, cond func(sim.AgentView) bool) sim.AgentView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := s.WaitAgent(ctx, "Default", name, cond)
	if err != nil {
		t.Fatalf("agent %s: %v (now %+v)", name, err, a)
	}
	return a
}

func waitRequest(t *testing.T, s *sim.Server, id int64, cond func(sim.RequestView) bool) sim.RequestView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := s.WaitRequest(ctx, id, cond)
	if err != nil {
		t.Fatalf("request %d: %v (now %+v)", id, err, r)
	}
	return r
}

func finished(r sim.RequestView) bool { return !r.FinishTime.IsZero() }

// children lists the child pids of pid (Linux /proc/<pid>/task/*/children: every thread may fork).
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func environ(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after the ")" that ends the command name; Z = zombie (exited)
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %v", pid, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/capture"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

var bins struct {
	entrypoint, sim string
	err             error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "azp-e2e-bin-")
	if err != nil {
		panic(err)
	}
	bins.entrypoint = filepath.Join(dir, "azp-entrypoint")
	bins.sim = filepath.Join(dir, "azp-sim")
	for out, pkg := range map[string]string{bins.entrypoint: "../../cmd/azp-entrypoint", bins.sim: "../../cmd/azp-sim"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			bins.err = fmt.Errorf("build %s: %v\n%s", pkg, err, b)
		}
	}
	os.Chmod(dir, 0o755)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	agentVersion = "4.260.0"
	platform     = "linux-x64"
)

// harness is one simulator with a pool, a manage-scope PAT and a fake agent package.
type harness struct {
	t     *testing.T
	sim   *sim.Server
	url   string
	token string
	root  string
	pkg   pkgbuild.Result
}

func requirePIDNamespace(t *testing.T) {
	t.Helper()
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end tests run the entrypoint as PID 1 of a new PID namespace, which needs root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) is not installed")
	}
}

// newHarness gives a test its own simulator, directories and token. Harnesses share nothing (each
// entrypoint runs in its own PID and mount namespaces), so every test that makes one runs in
// parallel with the others.
func newHarness(t *testing.T) *harness {
	t.Helper()
	requirePIDNamespace(t)
	t.Parallel()
	root := t.TempDir()
	// The agent may run as another user: every directory on the way must be traversable.
	for d := root; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	s := sim.StartForTest(t, sim.Options{PollTimeout: 300 * time.Millisecond, OfflineAfter: 2 * time.Second})
	url := s.OrgURL()
	token := "e2e" + randHex(20)
	if err := s.AddToken(token, sim.ScopeManage); err != nil {
		t.Fatal(err)
	}
	pkg, err := pkgbuild.Build(pkgbuild.Options{Version: agentVersion, Platform: platform, AgentBinary: bins.sim, OutDir: filepath.Join(root, "packages")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddPackage(sim.PackageSpec{Version: agentVersion, Platform: platform, FilePath: pkg.Path}); err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, sim: s, url: url, token: token, root: root, pkg: pkg}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// instance is one entrypoint: its directories and settings.
type instance struct {
	h        *harness
	name     string
	agentDir string
	stateDir string
	env      map[string]string
}

func (h *harness) instance(name string) *instance {
	dir := filepath.Join(h.root, name)
	in := &instance{h: h, name: name, agentDir: filepath.Join(dir, "agent"), stateDir: filepath.Join(dir, "state")}
	in.env = map[string]string{
		"PATH":               "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":               dir,
		"AZP_URL":            h.url,
		"AZP_TOKEN":          h.token,
		"AZP_POOL":           "Default",
		"AZP_AGENT_NAME":     name,
		"AZP_AGENT_DIR":      in.agentDir,
		"AZP_STATE_DIR":      in.stateDir,
		"AZP_AGENT_PLATFORM": platform,
		"AZP_LOG_FORMAT":     "json",
		"AZP_LOG_LEVEL":      "debug",
		"AZP_STOP_TIMEOUT":   "10s",
		"AZP_WORK_MIN_FREE":  "1MiB",
		// Keep the fake agent's real-world pauses short.
		"FAKE_AGENT_SESSION_RETRY":  "20s",
		"FAKE_AGENT_POLL_BACKOFF":   "1s",
		"FAKE_AGENT_ORPHAN_SECONDS": "1",
		"FAKE_AGENT_UPDATER_POLL":   "100ms",
	}
	return in
}

// run is one start of the entrypoint as PID 1 of a new PID namespace.
type run struct {
	in       *instance
	cmd      *exec.Cmd
	out      *capture.Buffer
	done     chan struct{}
	exitCode int
	started  time.Time
}

func (in *instance) start(args ...string) *run { return in.startWith(nil, args...) }

// startWith runs the entrypoint through a wrapper that execs it (e.g. setpriv), so it stays PID 1.
func (in *instance) startWith(wrapper []string, args ...string) *run {
	t := in.h.t
	t.Helper()
	// --kill-child: if the test dies, the namespace's PID 1 dies with unshare, and with it the rest.
	argv := append([]string{"--pid", "--fork", "--mount-proc", "--kill-child"}, wrapper...)
	// A `sh -c` wrapper names the entrypoint in its script; other wrappers (setpriv) exec it.
	if len(wrapper) == 0 || wrapper[0] != "sh" {
		argv = append(argv, bins.entrypoint)
	}
	argv = append(argv, args...)
	cmd := exec.Command("unshare", argv...)
	for k, v := range in.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	r := &run{in: in, cmd: cmd, out: &capture.Buffer{}, done: make(chan struct{}), started: time.Now()}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		r.exitCode = cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			if pid := r.pid(); pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", in.name, r.out.String())
		}
	})
	return r
}

// pid is the entrypoint's PID as seen from the test: the only child of unshare.
func (r *run) pid() int {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", r.cmd.Process.Pid, r.cmd.Process.Pid))
		if err != nil {
			return 0
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			pid, _ := strconv.Atoi(f[0])
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}

// signal sends sig to the entrypoint (PID 1 of its namespace) alone.
func (r *run) signal(sig syscall.Signal) {
	r.in.h.t.Helper()
	pid := r.pid()
	if pid <= 0 {
		r.in.h.t.Fatalf("no entrypoint process to signal")
	}
	if err := syscall.Kill(pid, sig); err != nil {
		r.in.h.t.Fatal(err)
	}
}

// stopWithin sends SIGTERM and returns the exit code, failing the test unless the entrypoint is
// gone before limit (a platform's SIGKILL, or a limit the contract sets).
func (r *run) stopWithin(limit time.Duration) int {
	r.in.h.t.Helper()
	start := time.Now()
	r.signal(syscall.SIGTERM)
	code := r.wait(limit + 10*time.Second)
	if took := time.Since(start); took >= limit {
		r.in.h.t.Fatalf("the stop took %s, want within %s", took, limit)
	}
	return code
}

// stopCleanly sends SIGTERM and expects exit 0 and, unless told to keep it, no registration left.
func (r *run) stopCleanly() {
	r.in.h.t.Helper()
	r.signal(syscall.SIGTERM)
	if code := r.wait(15 * time.Second); code != 0 {
		r.in.h.t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if r.in.env["AZP_DEREGISTER"] != "false" {
		r.in.assertRegistered(false)
	}
}

func (r *run) wait(timeout time.Duration) int {
	r.in.h.t.Helper()
	select {
	case <-r.done:
		return r.exitCode
	case <-time.After(timeout):
		r.in.h.t.Fatalf("the entrypoint did not exit within %s", timeout)
		return -1
	}
}

// waitLog waits for a log record whose message contains substr.
func (r *run) waitLog(substr string, timeout time.Duration) map[string]any {
	r.in.h.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, rec := range r.records() {
			if msg, _ := rec["msg"].(string); strings.Contains(msg, substr) {
				return rec
			}
		}
		select {
		case <-r.done:
			for _, rec := range r.records() {
				if msg, _ := rec["msg"].(string); strings.Contains(msg, substr) {
					return rec
				}
			}
			r.in.h.t.Fatalf("exited (code %d) before logging %q", r.exitCode, substr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	r.in.h.t.Fatalf("no log record containing %q within %s", substr, timeout)
	return nil
}

func (r *run) records() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(r.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

func (r *run) countLogs(substr string) int {
	n := 0
	for _, rec := range r.records() {
		if msg, _ := rec["msg"].(string); strings.Contains(msg, substr) {
			n++
		}
	}
	return n
}

// waitOnline waits until the simulator sees the agent online and returns it.
func (in *instance) waitOnline(timeout time.Duration) sim.AgentView {
	in.h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	a, err := in.h.sim.WaitAgent(ctx, "Default", in.name, func(a sim.AgentView) bool { return a.ID != 0 && a.Status == "online" })
	if err != nil {
		in.h.t.Fatalf("agent %s not online within %s: %v", in.name, timeout, err)
	}
	return a
}

// waitGone waits until the agent is deleted from the pool.
func (in *instance) waitGone(timeout time.Duration) {
	in.h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := in.h.sim.WaitAgent(ctx, "Default", in.name, func(a sim.AgentView) bool { return a.ID == 0 }); err != nil {
		in.h.t.Fatalf("agent %s still in the pool after %s", in.name, timeout)
	}
}

func (in *instance) assertRegistered(want bool) {
	in.h.t.Helper()
	_, ok := in.h.sim.Agent("Default", in.name)
	if ok != want {
		in.h.t.Fatalf("agent %s registered = %v, want %v (pool: %+v)", in.name, ok, want, in.h.sim.Agents("Default"))
	}
}

func (h *harness) queue(spec sim.JobSpec) int64 {
	h.t.Helper()
	if spec.Pool == "" {
		spec.Pool = "Default"
	}
	id, err := h.sim.QueueJob(spec)
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h *harness) waitRequest(id int64, timeout time.Duration, cond func(sim.RequestView) bool) sim.RequestView {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rv, err := h.sim.WaitRequest(ctx, id, cond)
	if err != nil {
		got, _ := h.sim.Request(id)
		h.t.Fatalf("request %d: condition not met within %s: %+v", id, timeout, got)
	}
	return rv
}

// startWithJob starts the entrypoint, waits for the agent to be online, queues a job and waits
// until the listener runs it.
func (in *instance) startWithJob(spec sim.JobSpec, args ...string) (*run, int64) {
	in.h.t.Helper()
	r := in.start(args...)
	in.waitOnline(30 * time.Second)
	id := in.h.queue(spec)
	in.h.waitRequest(id, 10*time.Second, running)
	r.waitLog("Running job", 10*time.Second)
	return r, id
}

// wantResult asserts how the server saw a job end.
func (h *harness) wantResult(id int64, result string) {
	h.t.Helper()
	if req, _ := h.sim.Request(id); req.Result != result {
		h.t.Fatalf("job %d result %q, want %s", id, req.Result, result)
	}
}

func running(r sim.RequestView) bool  { return !r.AssignTime.IsZero() }
func finished(r sim.RequestView) bool { return !r.FinishTime.IsZero() }

// procs lists the processes whose command line contains substr, as seen from the test.
func procs(substr string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})), substr) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// orphans are the live processes a job of this instance left behind (fake-orphan, with the agent
// root on their command line), so that other packages' tests running meanwhile do not count.
func (in *instance) orphans() []int {
	var out []int
	for _, pid := range procs("fake-orphan") {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), in.agentDir) && procState(pid) != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// listeners are the running listeners of an agent directory (excluding zombies).
func (in *instance) listeners() []int {
	var out []int
	for _, pid := range procs(filepath.Join(in.agentDir, "bin")) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 1 && strings.HasSuffix(args[0], "Agent.Listener") && args[1] == "run" && procState(pid) != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

func procState(pid int) byte {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0
	}
	return data[i+2]
}

// zombiesUnder counts zombie children of pid.
func zombiesUnder(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	n := 0
	for _, f := range strings.Fields(string(data)) {
		c, _ := strconv.Atoi(f)
		if procState(c) == 'Z' {
			n++
		}
	}
	return n
}

// health runs `azp-entrypoint health` inside the run's namespaces, as a container health check does.
func (r *run) health() int {
	cmd := exec.Command("nsenter", "--target", strconv.Itoa(r.pid()), "--pid", "--mount", "--",
		bins.entrypoint, "health", "--state-dir", r.in.stateDir)
	cmd.Run()
	return cmd.ProcessState.ExitCode()
}

// waitHealth polls `azp-entrypoint health` until it answers want.
func (r *run) waitHealth(want int, timeout time.Duration) {
	r.in.h.t.Helper()
	deadline := time.Now().Add(timeout)
	for r.health() != want {
		if time.Now().After(deadline) {
			r.in.h.t.Fatalf("health did not turn %d within %s", want, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

//go:build linux

package pid1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azp-entrypoint/azp-entrypoint/internal/capture"
)

// helperEnv selects a helper mode when the test binary is re-executed (see TestMain).
const helperEnv = "PID1_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintf(os.Stderr, "helper %s: FAIL: %v\n", mode, err)
			os.Exit(1)
		}
		fmt.Println("helper " + mode + ": OK")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func newTestReaper(t *testing.T) *Reaper {
	t.Helper()
	r, err := NewReaper(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func waitDone(t *testing.T, p *Process, within time.Duration) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(within):
		t.Fatalf("pid %d not reaped within %v", p.Pid, within)
	}
}

func TestReaperExitCode(t *testing.T) {
	r := newTestReaper(t)
	p, err := r.Start(exec.Command("/bin/sh", "-c", "exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid <= 0 {
		t.Fatalf("pid %d", p.Pid)
	}
	waitDone(t, p, 10*time.Second)
	if got := p.ExitCode(); got != 3 {
		t.Errorf("ExitCode = %d, want 3", got)
	}
	if st := p.Status(); !st.Exited() || st.ExitStatus() != 3 {
		t.Errorf("Status = %#x, want exited with 3", st)
	}
	if !errors.Is(p.Signal(unix.SIGTERM), os.ErrProcessDone) {
		t.Errorf("Signal after exit: want os.ErrProcessDone")
	}
}

func TestReaperSignalDeath(t *testing.T) {
	r := newTestReaper(t)
	for _, sig := range []syscall.Signal{unix.SIGTERM, unix.SIGKILL, unix.SIGINT} {
		// exec so that the signal reaches sleep itself, not a shell that waits for it.
		p, err := r.Start(exec.Command("/bin/sh", "-c", "exec sleep 30"))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.ExitCode(); got != -1 {
			t.Errorf("ExitCode while running = %d, want -1", got)
		}
		if err := p.Signal(sig); err != nil {
			t.Fatal(err)
		}
		waitDone(t, p, 10*time.Second)
		if got, want := p.ExitCode(), 128+int(sig); got != want {
			t.Errorf("%v: ExitCode = %d, want %d", sig, got, want)
		}
		if st := p.Status(); !st.Signaled() || st.Signal() != sig {
			t.Errorf("%v: Status = %#x", sig, st)
		}
	}
}

func TestProcessSignalRefusesBadPID(t *testing.T) {
	r := newTestReaper(t)
	for _, pid := range []int{0, -1, -42} {
		p := &Process{Pid: pid, r: r, exit: make(chan struct{}), done: make(chan struct{})}
		if err := p.Signal(unix.SIGTERM); err == nil {
			t.Errorf("Signal with pid %d: no error", pid)
		}
	}
	if err := (&Process{Pid: os.Getpid()}).Signal(unix.SIGTERM); err == nil {
		t.Errorf("Signal of a Process not from a reaper: no error")
	}
}

// Many short children at once: every status reaches its owner, none is lost or stolen.
func TestReaperManyConcurrentChildren(t *testing.T) {
	r := newTestReaper(t)
	const workers, each = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				code := (w*each + i) % 7
				p, err := r.Start(exec.Command("/bin/sh", "-c", "exit "+strconv.Itoa(code)))
				if err != nil {
					errs <- err
					return
				}
				select {
				case <-p.Done():
				case <-time.After(20 * time.Second):
					errs <- fmt.Errorf("pid %d: status lost", p.Pid)
					return
				}
				if got := p.ExitCode(); got != code {
					errs <- fmt.Errorf("pid %d: exit %d, want %d", p.Pid, got, code)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := r.Orphans(); n != 0 {
		t.Errorf("Orphans = %d, want 0 (every status belonged to a registered child)", n)
	}
	if kids, _ := Children(); len(kids) != 0 {
		t.Errorf("children left: %v", kids)
	}
}

func TestReaperStreamsOutputThroughPipes(t *testing.T) {
	r := newTestReaper(t)
	var out capture.Buffer
	var errOut capture.Buffer
	cmd := exec.Command("/bin/sh", "-c", "read x; echo out:$x; echo err >&2")
	cmd.Stdin = strings.NewReader("hello\n")
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	p, err := r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	// Done waits for the copies, so the output is complete now.
	if got := out.String(); got != "out:hello\n" {
		t.Errorf("stdout = %q", got)
	}
	if got := errOut.String(); got != "err\n" {
		t.Errorf("stderr = %q", got)
	}

	// One writer for both streams shares one pipe, as with exec.Cmd.
	var both capture.Buffer
	cmd = exec.Command("/bin/sh", "-c", "echo a; echo b >&2")
	cmd.Stdout, cmd.Stderr = &both, &both
	p, err = r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p, 10*time.Second)
	if got := both.String(); got != "a\nb\n" {
		t.Errorf("combined = %q", got)
	}
}

// A grandchild that keeps the output pipe open must not hold up Done beyond the grace.
func TestReaperStdioGrace(t *testing.T) {
	old := stdioGrace
	stdioGrace = 200 * time.Millisecond
	t.Cleanup(func() { stdioGrace = old })
	r := newTestReaper(t)
	var out capture.Buffer
	cmd := exec.Command("/bin/sh", "-c", "sleep 30 & echo $!")
	cmd.Stdout = &out
	p, err := r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitDone(t, p, 10*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Done took %v", d)
	}
	if p.ExitCode() != 0 {
		t.Errorf("exit %d", p.ExitCode())
	}
	killByPIDFromOutput(t, out.String())
}

// killByPIDFromOutput ends a grandchild this test started, by its PID.
func killByPIDFromOutput(t *testing.T, s string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(strings.Split(s, "\n")[0]))
	if err != nil || pid <= 1 {
		t.Fatalf("no pid in output %q", s)
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	return pid
}

func TestReaperRun(t *testing.T) {
	r := newTestReaper(t)
	if err := r.Run(context.Background(), exec.Command("/bin/sh", "-c", "exit 0")); err != nil {
		t.Errorf("exit 0: %v", err)
	}
	err := r.Run(context.Background(), exec.Command("/bin/sh", "-c", "exit 4"))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 4 {
		t.Errorf("exit 4: got %v", err)
	}
	if err := r.Run(context.Background(), exec.Command("/nonexistent/binary")); err == nil {
		t.Errorf("missing binary: no error")
	}
	// The reaper still works after a failed start.
	if err := r.Run(context.Background(), exec.Command("/bin/sh", "-c", "exit 0")); err != nil {
		t.Errorf("after failed start: %v", err)
	}
}

// Cancelling Run ends the wrapper and what it started (config.sh -> Agent.Listener).
func TestReaperRunCancelKillsTree(t *testing.T) {
	r := newTestReaper(t)
	dir := t.TempDir()
	pidFile := dir + "/grandchild"
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := r.Run(ctx, exec.Command("/bin/sh", "-c", "sleep 30 & echo $! > "+pidFile+"; wait"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v after cancel", d)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 1 {
		t.Fatalf("bad pid %q", data)
	}
	// The grandchild was killed: gone, or a zombie waiting for whoever inherited it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			break
		}
		if ps, ok := parseStat(pid, st); ok && ps.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			_ = unix.Kill(pid, unix.SIGKILL)
			t.Fatalf("grandchild %d still running after Run was cancelled", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOnlyOneReaper(t *testing.T) {
	r := newTestReaper(t)
	if r2, err := NewReaper(nil); err == nil {
		r2.Close()
		t.Fatal("second NewReaper succeeded")
	}
	r.Close()
	r3, err := NewReaper(nil)
	if err != nil {
		t.Fatalf("NewReaper after Close: %v", err)
	}
	r3.Close()
	if _, err := r.Start(exec.Command("/bin/true")); err == nil {
		t.Error("Start on a closed reaper succeeded")
	}
}

func TestPrepareCmdUserAndGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a child as another user")
	}
	r := newTestReaper(t)
	run := func(u *User) string {
		t.Helper()
		var out capture.Buffer
		// pgrp is field 5 of /proc/<pid>/stat; comm "sh" has no spaces.
		cmd := exec.Command("/bin/sh", "-c", `echo "$(id -u) $(id -g) [$(id -G)] $$ $(cut -d' ' -f5 /proc/$$/stat)"`)
		cmd.Stdout = &out
		cmd.Stderr = &out
		PrepareCmd(cmd, u)
		if cmd.SysProcAttr.Pdeathsig != 0 {
			t.Error("Pdeathsig set")
		}
		if err := r.Run(context.Background(), cmd); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		return strings.TrimSpace(out.String())
	}
	check := func(got, wantIDs string) {
		t.Helper()
		f := strings.Fields(got)
		if len(f) < 3 || !strings.HasPrefix(got, wantIDs) {
			t.Errorf("got %q, want prefix %q", got, wantIDs)
			return
		}
		if f[len(f)-1] != f[len(f)-2] {
			t.Errorf("child pgrp %s != pid %s: not in its own process group", f[len(f)-1], f[len(f)-2])
		}
	}
	check(run(&User{UID: 1000, GID: 1000, Groups: []uint32{1000, 999}}), "1000 1000 [1000 999]")
	// No supplementary groups: root's group 0 must not stay.
	check(run(&User{UID: 1000, GID: 1001, Groups: []uint32{}}), "1000 1001 [1001]")
	check(run(&User{UID: 1000, GID: 1001}), "1000 1001 [1001]")
	// nil user: same identity, own process group.
	check(run(nil), "0 0")
}

func TestParseStat(t *testing.T) {
	st, ok := parseStat(42, []byte("42 (we (ird) name)) Z 7 42 42 0 -1"))
	if !ok || st.Pid != 42 || st.PPid != 7 || st.State != 'Z' || st.Comm != "we (ird) name)" {
		t.Errorf("got %+v %v", st, ok)
	}
	if _, ok := parseStat(1, []byte("garbage")); ok {
		t.Error("garbage parsed")
	}
	procs := []procStat{{Pid: 2, PPid: 1}, {Pid: 3, PPid: 2}, {Pid: 4, PPid: 3}, {Pid: 5, PPid: 1}, {Pid: 6, PPid: 2}}
	if got := fmt.Sprint(descendants(procs, 2)); got != "[3 6 4]" {
		t.Errorf("descendants = %s", got)
	}
}

func TestNotifyDeliversStopSignals(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := Notify(ctx)
	// Signal ourselves (our own PID, which the test process owns) and expect the handler to
	// get it instead of the default action.
	for _, sig := range []syscall.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGQUIT} {
		if err := unix.Kill(os.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ch:
			if got != sig {
				t.Errorf("got %v, want %v", got, sig)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v not delivered", sig)
		}
	}
	// SIGPIPE is swallowed, not fatal.
	if err := unix.Kill(os.Getpid(), unix.SIGPIPE); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ch:
		t.Errorf("unexpected %v on the stop channel", got)
	case <-time.After(100 * time.Millisecond):
	}
}

// runHelperProcess re-executes the test binary in a helper mode (optionally under a prefix such
// as unshare) through a reaper, and fails the test with the helper's output if it fails.
func runHelperProcess(t *testing.T, mode string, prefix ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, prefix...), self)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	var out capture.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	r := newTestReaper(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Run(ctx, cmd); err != nil {
		t.Fatalf("helper %s: %v\n%s", mode, err, out.String())
	}
	if !strings.Contains(out.String(), "helper "+mode+": OK") {
		t.Fatalf("helper %s did not report OK:\n%s", mode, out.String())
	}
	r.Close()
	return out.String()
}

// TestPID1InNamespace runs the test binary as PID 1 of a new PID namespace and checks, inside,
// that orphans are reaped and that stop signals sent by another process reach the handler.
func TestPID1InNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a PID namespace (unshare --pid)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare(1) not installed")
	}
	if out, err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a PID namespace here: %v: %s", err, out)
	}
	out := runHelperProcess(t, "init", unshare, "--pid", "--fork", "--mount-proc")
	t.Log(out)
}

// TestSubreaper checks, in a helper process that is not PID 1, that BecomeSubreaper makes
// orphans come to us and that the reaper reaps them. A helper, because making the go test
// process itself a subreaper would change it for every other test.
func TestSubreaper(t *testing.T) {
	out := runHelperProcess(t, "subreaper")
	t.Log(out)
}

func runHelper(mode string) error {
	switch mode {
	case "init":
		return helperInit()
	case "subreaper":
		return helperSubreaper()
	case "freezekill":
		return helperFreezeKill()
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// startOrphan starts a shell that backgrounds a sleep and exits at once: the sleep is orphaned
// and reparented to the nearest subreaper or PID 1. It returns the orphan's PID.
func startOrphan(r *Reaper, seconds string) (int, error) {
	var out capture.Buffer
	cmd := exec.Command("/bin/sh", "-c", "sleep "+seconds+" >/dev/null 2>&1 & echo $!; exit 0")
	cmd.Stdout = &out
	p, err := r.Start(cmd)
	if err != nil {
		return 0, err
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		return 0, errors.New("shell not reaped")
	}
	if p.ExitCode() != 0 {
		return 0, fmt.Errorf("shell exited %d", p.ExitCode())
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		return 0, fmt.Errorf("orphan pid from %q: %v", out.String(), err)
	}
	return pid, nil
}

func waitFor(what string, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for " + what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func zombies() ([]procStat, error) {
	procs, err := readProcs("/proc")
	if err != nil {
		return nil, err
	}
	var z []procStat
	for _, p := range procs {
		if p.State == 'Z' {
			z = append(z, p)
		}
	}
	return z, nil
}

func helperInit() error {
	if !IsInit() {
		return fmt.Errorf("pid %d, want 1", os.Getpid())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := Notify(ctx)
	r, err := Setup(nil)
	if err != nil {
		return err
	}
	defer r.Close()
	if sub, _ := IsSubreaper(); sub {
		return errors.New("PID 1 made itself a subreaper; it needs not")
	}

	// A child that exits 3 gives 3.
	p, err := r.Start(exec.Command("/bin/sh", "-c", "exit 3"))
	if err != nil {
		return err
	}
	<-p.Done()
	if p.ExitCode() != 3 {
		return fmt.Errorf("exit code %d, want 3", p.ExitCode())
	}

	// A grandchild orphan is reparented to PID 1 and reaped.
	orphan, err := startOrphan(r, "0.2")
	if err != nil {
		return err
	}
	if err := waitFor("the orphan to be reaped", 10*time.Second, func() bool { return r.Orphans() >= 1 }); err != nil {
		return err
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", orphan)); err == nil {
		return fmt.Errorf("orphan %d still in /proc after it was counted", orphan)
	}
	if z, err := zombies(); err != nil || len(z) != 0 {
		return fmt.Errorf("zombies in the namespace: %v %v", z, err)
	}
	if n := r.Orphans(); n != 1 {
		return fmt.Errorf("Orphans = %d, want 1", n)
	}

	// Stop signals sent to PID 1 by another process of the namespace reach the handler.
	for _, sig := range []string{"TERM", "INT", "QUIT"} {
		k, err := r.Start(exec.Command("/bin/sh", "-c", "kill -"+sig+" 1"))
		if err != nil {
			return err
		}
		select {
		case got := <-sigs:
			if unix.SignalName(got.(syscall.Signal)) != "SIG"+sig {
				return fmt.Errorf("got %v, want SIG%s", got, sig)
			}
		case <-time.After(10 * time.Second):
			return fmt.Errorf("SIG%s to PID 1 never reached the handler", sig)
		}
		<-k.Done()
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	return r.WaitChildren(wctx)
}

func helperSubreaper() error {
	if IsInit() {
		return errors.New("helper is PID 1; want an ordinary process")
	}
	if sub, _ := IsSubreaper(); sub {
		return errors.New("already a subreaper before BecomeSubreaper")
	}
	changed, err := BecomeSubreaper()
	if err != nil || !changed {
		return fmt.Errorf("BecomeSubreaper = %v, %v", changed, err)
	}
	if sub, err := IsSubreaper(); err != nil || !sub {
		return fmt.Errorf("IsSubreaper = %v, %v", sub, err)
	}
	r, err := NewReaper(nil)
	if err != nil {
		return err
	}
	defer r.Close()
	orphan, err := startOrphan(r, "0.3")
	if err != nil {
		return err
	}
	// While it runs, the orphan is our child now.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphan)); err == nil {
		if ps, ok := parseStat(orphan, st); ok && ps.State != 'Z' && ps.PPid != os.Getpid() {
			return fmt.Errorf("orphan %d has parent %d, want us (%d)", orphan, ps.PPid, os.Getpid())
		}
	}
	if err := waitFor("the orphan to be reaped", 10*time.Second, func() bool { return r.Orphans() >= 1 }); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitChildren(ctx); err != nil {
		return err
	}
	if n := r.Orphans(); n != 1 {
		return fmt.Errorf("Orphans = %d, want 1", n)
	}
	return nil
}

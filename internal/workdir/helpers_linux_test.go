//go:build linux

package workdir

import (
	"bufio"
	"context"
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

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the helper processes the tests need:
//   - AZP_WORKDIR_HELPER=lease: an agent entrypoint that leases a slot, reports it, and holds it
//     until its stdin closes (then releases it) or until it is killed;
//   - AZP_WORKDIR_HELPER=prepare: one Prepare call, reported as "exit <code> <error>";
//   - AZP_WORKDIR_MOUNTNS=1: the test binary itself, in a private mount namespace of its own, so
//     that the mounts a test makes vanish with the process whatever happens to it.
const (
	envHelper  = "AZP_WORKDIR_HELPER"
	envMountNS = "AZP_WORKDIR_MOUNTNS"
	envRoot    = "AZP_WORKDIR_ROOT"
	envAgent   = "AZP_WORKDIR_AGENT"
	envUID     = "AZP_WORKDIR_UID"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envHelper) {
	case "lease":
		os.Exit(helperLease())
	case "prepare":
		os.Exit(helperPrepare())
	}
	if os.Getenv(envMountNS) == "1" {
		// Mounts made from here on must not propagate back to the parent's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "make mounts private: %v\n", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

func helperLease() int {
	shared := true
	l, err := Prepare(context.Background(), Options{
		Root: os.Getenv(envRoot), Shared: &shared, UID: -1, GID: -1,
		Holder: Holder{Agent: os.Getenv(envAgent), Task: "task-" + os.Getenv(envAgent)},
	})
	if err != nil {
		fmt.Printf("error %d %v\n", exit.Code(err), err)
		return 3
	}
	fmt.Printf("slot %d %s\n", l.Slot, l.Dir)
	io.Copy(io.Discard, os.Stdin) // hold the lease until the test closes our stdin
	if err := l.Release(); err != nil {
		fmt.Printf("release error %v\n", err)
		return 4
	}
	if err := l.Release(); err != nil { // idempotent
		fmt.Printf("second release error %v\n", err)
		return 4
	}
	fmt.Println("released")
	return 0
}

func helperPrepare() int {
	uid, _ := strconv.Atoi(os.Getenv(envUID))
	_, err := Prepare(context.Background(), Options{Root: os.Getenv(envRoot), UID: uid, GID: uid})
	if err != nil {
		fmt.Printf("exit %d %v\n", exit.Code(err), err)
		return 0
	}
	fmt.Println("exit 0")
	return 0
}

// holder is a helper process holding (or trying to hold) a slot.
type holder struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	slot  int
	dir   string
	done  chan error
}

func startHolder(t *testing.T, root, agent string) *holder {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=lease", envRoot+"="+root, envAgent+"="+agent)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{t: t, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), slot: -1, done: make(chan error, 1)}
	t.Cleanup(func() {
		// End only the process we started, by its PID.
		h.cmd.Process.Kill()
		h.wait()
	})
	return h
}

// leased reads the helper's report and returns its slot.
func (h *holder) leased() int {
	h.t.Helper()
	type res struct {
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() { l, err := h.out.ReadString('\n'); ch <- res{l, err} }()
	select {
	case r := <-ch:
		var n int
		var dir string
		if _, err := fmt.Sscanf(r.line, "slot %d %s", &n, &dir); err != nil {
			h.t.Fatalf("helper said %q (%v)", r.line, r.err)
		}
		h.slot, h.dir = n, dir
		return n
	case <-time.After(20 * time.Second):
		h.t.Fatal("helper did not report a slot within 20s")
	}
	return -1
}

func (h *holder) wait() error {
	if h.done == nil {
		return nil
	}
	go func() { h.done <- h.cmd.Wait() }()
	err := <-h.done
	h.done = nil
	return err
}

// releaseAndExit closes the helper's stdin so that it releases its slot cleanly and exits.
func (h *holder) releaseAndExit() {
	h.t.Helper()
	h.stdin.Close()
	rest, _ := io.ReadAll(h.out)
	if err := h.wait(); err != nil || !strings.Contains(string(rest), "released") {
		h.t.Fatalf("clean release: %v, output %q", err, rest)
	}
}

// sigkill kills the helper the hard way: no deferred code, no Release.
func (h *holder) sigkill() {
	h.t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		h.t.Fatal(err)
	}
	h.wait()
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount, chown); run the tests as root")
	}
}

// inMountNamespace runs the calling top-level test again in a child process with a private mount
// namespace and reports whether the caller is that child. The parent returns false after passing
// on the child's result (pass, skip with its reason, or failure with its output).
func inMountNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(envMountNS) == "1" {
		return true
	}
	requireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envMountNS+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if cmd.ProcessState == nil {
			t.Skipf("cannot create a mount namespace (needs CAP_SYS_ADMIN): %v", err)
		}
		t.Fatalf("in a private mount namespace: %v\n%s", err, out)
	}
	if i := strings.Index(string(out), "--- SKIP: "+t.Name()); i >= 0 {
		// The skip reason is what the child logged between its RUN and SKIP lines.
		reason := string(out[:i])
		if j := strings.Index(reason, "=== RUN"); j >= 0 {
			if k := strings.Index(reason[j:], "\n"); k >= 0 {
				reason = reason[j+k+1:]
			}
		}
		t.Skip("in a private mount namespace: " + strings.TrimSpace(reason))
	}
	if testing.Verbose() {
		t.Logf("mount namespace child:\n%s", out)
	}
	return false
}

// mount runs mount(8) and registers the unmount; the private namespace drops it anyway.
func mount(t *testing.T, target string, args ...string) {
	t.Helper()
	out, err := exec.Command("mount", append(args, target)...).CombinedOutput()
	if err != nil {
		t.Skipf("mounting is not permitted here: mount %v %s: %v: %s", args, target, err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, 0); err != nil {
			unix.Unmount(target, unix.MNT_DETACH)
		}
	})
}

func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mount(t, dir, "-t", "tmpfs", "-o", "size="+size, "tmpfs")
	return dir
}

func owner(t *testing.T, p string) (int, int) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Uid), int(st.Gid)
}

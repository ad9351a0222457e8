//go:build linux

package pid1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StdioGrace bounds how long Done waits, after the process exited, for the output copied from
// pipes that Start created. Grandchildren (job processes) may inherit the pipe and keep it open
// long after the process itself is gone; like exec.Cmd.WaitDelay, this stops that from holding
// up the exit status.
const StdioGrace = 2 * time.Second

var stdioGrace = StdioGrace // tests shorten it

// reaperActive makes sure one process never has two wait4(-1) owners.
var reaperActive atomic.Bool

// Reaper owns every wait in the process: on each SIGCHLD it collects exit statuses with
// wait4(-1, WNOHANG) and hands each one to the Process that Start registered for the PID.
// Statuses of PIDs nobody registered are orphans (reparented to us as PID 1 or subreaper).
type Reaper struct {
	log *slog.Logger

	// mu is held across cmd.Start plus registration and across each wait4 sweep plus dispatch.
	// So a child that exits at once cannot be reaped before it is registered, and Process.Signal
	// (which takes mu) never signals a PID that was reaped and might already be reused.
	mu      sync.Mutex
	procs   map[int]*Process
	orphans atomic.Int64

	sigch   chan os.Signal
	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	closed  sync.Once
}

// NewReaper starts reaping. Only one Reaper may run in a process at a time; Close ends it.
func NewReaper(log *slog.Logger) (*Reaper, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !reaperActive.CompareAndSwap(false, true) {
		return nil, errors.New("pid1: a reaper is already running in this process")
	}
	r := &Reaper{
		log:     log,
		procs:   make(map[int]*Process),
		sigch:   make(chan os.Signal, 1),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	signal.Notify(r.sigch, unix.SIGCHLD)
	go r.loop()
	r.Kick() // zombies that were already there (inherited at exec, or reparented before now)
	return r, nil
}

// Setup prepares the process to be a good init: it makes the process a child subreaper unless it
// is PID 1, and starts the Reaper. Failing to become a subreaper (a seccomp profile that forbids
// prctl) is only logged: whatever init is PID 1 then reaps the orphans instead.
func Setup(log *slog.Logger) (*Reaper, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Jobs may run as the same uid as the entrypoint (a non-root container user). Non-dumpable,
	// /proc/<pid>/environ and /proc/<pid>/mem of this process are root's, and ptrace is refused, so
	// a job cannot read the token or the task role's URI out of PID 1. exec resets the flag, so
	// children are unaffected.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		log.Warn("cannot mark the entrypoint non-dumpable", "err", err)
	}
	if changed, err := BecomeSubreaper(); err != nil {
		log.Warn("cannot become a child subreaper; orphaned job processes will be reaped by PID 1 instead", "err", err)
	} else if changed {
		log.Debug("not PID 1: became a child subreaper", "pid", os.Getpid())
	}
	return NewReaper(log)
}

// Close stops reaping. Processes still running are not touched; their Done never closes.
func (r *Reaper) Close() error {
	r.closed.Do(func() {
		signal.Stop(r.sigch)
		close(r.stop)
		<-r.stopped
		reaperActive.Store(false)
	})
	return nil
}

// Kick asks for a reaping sweep now (a SIGCHLD does the same).
func (r *Reaper) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Orphans is the number of exit statuses reaped for PIDs that nobody registered.
func (r *Reaper) Orphans() int { return int(r.orphans.Load()) }

func (r *Reaper) loop() {
	defer close(r.stopped)
	for {
		select {
		case <-r.stop:
			return
		case <-r.sigch:
		case <-r.kick:
		}
		r.sweep()
	}
}

// sweep collects every status that is ready. SIGCHLDs coalesce, so one signal may stand for many
// exits; looping until wait4 has nothing left makes that harmless.
func (r *Reaper) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children at all; 0: none ready
			return
		}
		status := syscall.WaitStatus(ws)
		if p, ok := r.procs[pid]; ok {
			delete(r.procs, pid)
			p.exited(status)
			continue
		}
		r.orphans.Add(1)
		r.log.Debug("reaped orphan", "pid", pid, "exit_code", exitCode(status))
	}
}

// Process is a child started by a Reaper.
type Process struct {
	Pid int

	r      *Reaper
	status syscall.WaitStatus
	exit   chan struct{} // closed when the status is known
	done   chan struct{} // closed when the status is known and output is copied
	stdio  sync.WaitGroup
	closer []io.Closer // read ends closed after StdioGrace if copying has not ended
}

// Start starts cmd and registers its PID before any status can be reaped. Never call cmd.Wait
// (nor Run/Output/CombinedOutput); use the Process. Standard streams that are *os.File (or nil)
// are passed as they are; any other io.Writer/io.Reader is connected through a pipe that Start
// creates and copies, so output still streams. Do not use exec.CommandContext: its context
// watcher needs cmd.Wait.
func (r *Reaper) Start(cmd *exec.Cmd) (*Process, error) {
	if cmd.Process != nil {
		return nil, errors.New("pid1: command already started")
	}
	select {
	case <-r.stop:
		return nil, errors.New("pid1: reaper is closed")
	default:
	}
	p := &Process{r: r, exit: make(chan struct{}), done: make(chan struct{})}
	var afterStart []io.Closer // child's ends of our pipes
	var copies []func()
	fail := func(err error) (*Process, error) {
		for _, c := range afterStart {
			c.Close()
		}
		for _, c := range p.closer {
			c.Close()
		}
		return nil, err
	}

	// Output: one pipe per distinct writer, as exec.Cmd does (Stdout == Stderr shares a pipe).
	outPipe := func(w io.Writer) (io.Writer, error) {
		if w == nil {
			return nil, nil
		}
		if f, ok := w.(*os.File); ok {
			return f, nil
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		afterStart = append(afterStart, pw)
		p.closer = append(p.closer, pr)
		p.stdio.Add(1)
		copies = append(copies, func() {
			defer p.stdio.Done()
			io.Copy(w, pr) //nolint:errcheck // a failing log sink must not stop the child
			pr.Close()
		})
		return pw, nil
	}
	var err error
	stdout, stderr := cmd.Stdout, cmd.Stderr
	if cmd.Stdout, err = outPipe(stdout); err != nil {
		return fail(err)
	}
	if stderr != nil && interfaceEqual(stderr, stdout) {
		cmd.Stderr = cmd.Stdout
	} else if cmd.Stderr, err = outPipe(stderr); err != nil {
		return fail(err)
	}
	if in := cmd.Stdin; in != nil {
		if _, ok := in.(*os.File); !ok {
			pr, pw, err := os.Pipe()
			if err != nil {
				return fail(err)
			}
			cmd.Stdin = pr
			afterStart = append(afterStart, pr)
			copies = append(copies, func() {
				io.Copy(pw, in) //nolint:errcheck // the child may stop reading; that is its call
				pw.Close()
			})
		}
	}

	r.mu.Lock()
	err = cmd.Start()
	if err != nil {
		r.mu.Unlock()
		return fail(err)
	}
	p.Pid = cmd.Process.Pid
	r.procs[p.Pid] = p
	r.mu.Unlock()
	// The reaper owns the wait; drop the os.Process handle (its pidfd) so nothing waits on it.
	_ = cmd.Process.Release()

	for _, c := range afterStart {
		c.Close()
	}
	for _, c := range copies {
		go c()
	}
	go p.finish()
	return p, nil
}

func interfaceEqual(a, b any) (eq bool) {
	defer func() {
		if recover() != nil { // uncomparable dynamic types
			eq = false
		}
	}()
	return a == b
}

// exited runs under r.mu from sweep.
func (p *Process) exited(status syscall.WaitStatus) {
	p.status = status
	close(p.exit)
}

func (p *Process) finish() {
	<-p.exit
	copied := make(chan struct{})
	go func() { p.stdio.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(stdioGrace):
		// A grandchild holds the pipe open. Closing our read end ends the copy; the grandchild
		// gets EPIPE on its next write, as it would after exec.Cmd.WaitDelay.
		for _, c := range p.closer {
			c.Close()
		}
		<-copied
	}
	close(p.done)
}

// Done is closed when the process has exited and its piped output has been copied.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for Done or for ctx to end, whichever is first.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status is the raw wait status; valid once Done is closed.
func (p *Process) Status() syscall.WaitStatus {
	select {
	case <-p.exit:
		return p.status
	default:
		return 0
	}
}

// Exited reports whether the exit status is known (Done may still wait for output).
func (p *Process) Exited() bool {
	select {
	case <-p.exit:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status, 128+n for a death by signal n (as shells and tini report it), or
// -1 while the process runs.
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return exitCode(p.status)
}

func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return (128 + int(ws.Signal())) & 0xff
	default:
		return -1
	}
}

// Signal sends sig to this process's PID alone (never its group, never -1). After the process has
// been reaped it returns os.ErrProcessDone instead of signalling a PID that may have been reused.
func (p *Process) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("pid1: unsupported signal %v", sig)
	}
	if p.Pid <= 0 {
		return fmt.Errorf("pid1: refusing to signal pid %d", p.Pid)
	}
	if p.r == nil {
		return errors.New("pid1: process was not started by a reaper")
	}
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if p.Exited() {
		return os.ErrProcessDone
	}
	if err := unix.Kill(p.Pid, s); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return os.ErrProcessDone
		}
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.Pid, err)
	}
	return nil
}

// Run starts cmd, waits for it and returns nil on exit 0 or an *ExitError. If ctx ends first, the
// process and every descendant it has at that moment get SIGKILL, each by its own PID (so a
// config.sh wrapper does not leave its Agent.Listener running), and Run returns ctx's error once
// the process has been reaped.
func (r *Reaper) Run(ctx context.Context, cmd *exec.Cmd) error {
	p, err := r.Start(cmd)
	if err != nil {
		return err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.KillTree()
		<-p.Done()
		return fmt.Errorf("%s stopped: %w", cmd.Path, ctx.Err())
	}
	if code := p.ExitCode(); code != 0 {
		return &ExitError{Path: cmd.Path, Code: code}
	}
	return nil
}

// KillTree sends SIGKILL to the process and to each of its current descendants, one PID at a
// time, the descendants first listed from /proc. Meant for short helper processes (configure,
// remove) that must end now; the listener is stopped with Signal alone.
func (p *Process) KillTree() {
	procs, _ := readProcs("/proc")
	for _, pid := range descendants(procs, p.Pid) {
		if pid > 1 && pid != os.Getpid() {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
	_ = p.Signal(unix.SIGKILL)
}

// WaitChildren waits until the process has no child processes left (zombies included), reaping
// as it goes. For shutdown as PID 1 and for tests.
func (r *Reaper) WaitChildren(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		r.Kick()
		kids, err := Children()
		if err != nil {
			return err
		}
		if len(kids) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for child processes %v: %w", kids, ctx.Err())
		case <-t.C:
		}
	}
}

//go:build linux

package pid1

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// StopSignals are the signals that start (and, the second time, hurry) the stop sequence.
var StopSignals = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGQUIT}

// Notify installs handlers for SIGTERM, SIGINT and SIGQUIT and returns the channel they arrive on
// (buffered, so a second signal during a busy moment is not lost). PID 1 must install them
// explicitly: the kernel drops signals whose disposition is the default for PID 1, and the Go
// runtime's fallback then exits with status 2 without running deferred calls.
//
// It also swallows SIGPIPE (a write to a closed stdout pipe returns EPIPE instead of killing us),
// SIGTTIN and SIGTTOU (a background read or write on a terminal under docker run -it must not
// stop us). They are caught and dropped rather than set to SIG_IGN, because ignored dispositions
// are inherited across exec and would change how the agent's job processes behave; caught ones
// are reset to the default in every child. SIGCHLD belongs to the Reaper; SIGURG (Go's preemption)
// and SIGWINCH are never handled or forwarded.
//
// When ctx ends the handlers are removed; the channel is not closed.
func Notify(ctx context.Context) <-chan os.Signal {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, StopSignals...)
	drop := make(chan os.Signal, 1)
	signal.Notify(drop, unix.SIGPIPE, unix.SIGTTIN, unix.SIGTTOU)
	go func() {
		for {
			select {
			case <-drop:
			case <-ctx.Done():
				signal.Stop(ch)
				signal.Stop(drop)
				return
			}
		}
	}()
	return ch
}

// IsInit reports whether this process is PID 1 of its PID namespace.
func IsInit() bool { return os.Getpid() == 1 }

// BecomeSubreaper makes this process a child subreaper (PR_SET_CHILD_SUBREAPER) unless it is
// PID 1, so that orphans of the agent's jobs are reparented to us and reaped even when tini
// (ECS initProcessEnabled, docker run --init) is PID 1. It reports whether it changed anything.
func BecomeSubreaper() (bool, error) {
	if IsInit() {
		return false, nil
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return false, os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
	}
	return true, nil
}

// IsSubreaper reports whether this process is a child subreaper.
func IsSubreaper() (bool, error) {
	// PR_GET_CHILD_SUBREAPER stores an int at the address passed as arg2. v is on the heap,
	// which Go does not move, and KeepAlive holds it until the call has returned.
	v := new(int32)
	err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(v)), 0, 0, 0)
	runtime.KeepAlive(v)
	if err != nil {
		return false, os.NewSyscallError("prctl(PR_GET_CHILD_SUBREAPER)", err)
	}
	return *v != 0, nil
}

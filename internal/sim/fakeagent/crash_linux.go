//go:build linux

package fakeagent

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// crash kills the process by a signal: "segv" by SIGSEGV, anything else by SIGKILL. The Go runtime
// handles SIGSEGV itself and ignores one sent by kill(2), so the default action is restored first.
func crash(kind string) {
	sig := syscall.SIGKILL
	if kind == "segv" || kind == "sigsegv" {
		sig = syscall.SIGSEGV
		// struct kernel_sigaction all zero = SIG_DFL, no flags, empty mask (same layout on amd64 and arm64).
		var act [4]uint64
		syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGSEGV), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
	}
	syscall.Kill(os.Getpid(), sig)
	time.Sleep(5 * time.Second)
	os.Exit(139)
}

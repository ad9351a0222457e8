//go:build !linux

package fakeagent

import (
	"os"
	"syscall"
)

// crash kills the process with SIGKILL (SIGSEGV needs the Linux-only default-action reset).
func crash(string) {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	os.Exit(137)
}

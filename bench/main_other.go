//go:build !linux

package main

import (
	"fmt"
	"os"
)

// The benchmark measures a Linux PID-1 supervisor with /proc and a child subreaper.
func main() {
	fmt.Fprintln(os.Stderr, "bench: runs on Linux only")
	os.Exit(1)
}

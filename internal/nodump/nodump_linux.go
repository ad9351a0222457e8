//go:build linux

package nodump

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Err is what the init step could not do (nil when all went well); cli reports it once it has a
// logger. Being dumpable is not fatal: root mode does not depend on it.
var Err error

func init() { Err = Apply() }

var once sync.Once

// Apply scrubs the secrets from the environment block and marks the process non-dumpable. It is
// idempotent (a second call as non-root cannot reopen environ; the first call's scrub stands).
func Apply() error {
	once.Do(func() { Err = apply() })
	return Err
}

func apply() error {
	var errs []error
	// Scrub first: once non-dumpable, /proc/self's files belong to root (proc_pid_make_inode
	// uses task_dump_owner), and a non-root process can no longer open its own environ or mem.
	if err := scrubEnviron(); err != nil {
		errs = append(errs, fmt.Errorf("scrub the environment block: %w", err))
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		errs = append(errs, fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err))
	}
	return errors.Join(errs...)
}

// Dumpable reports the process's dumpable flag.
func Dumpable() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	return v != 0, err
}

// scrubEnviron overwrites, in the memory the kernel serves as /proc/self/environ (env_start to
// env_end of /proc/self/stat), the value of every secret entry with '*'. The runtime copied the
// environment into its own memory at start (runtime.goenvs_unix), so os.Getenv is unaffected.
func scrubEnviron() error {
	start, end, err := envBounds()
	if err != nil {
		return err
	}
	block, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		return err
	}
	if uint64(len(block)) != end-start {
		return fmt.Errorf("environ holds %d bytes, env_start..env_end %d", len(block), end-start)
	}
	changed := false
	off := 0
	for _, entry := range bytes.Split(block, []byte{0}) {
		if k, v, ok := bytes.Cut(entry, []byte{'='}); ok && len(v) > 0 && IsSecret(string(k), string(v)) {
			vs := off + len(k) + 1
			for i := vs; i < vs+len(v); i++ {
				block[i] = '*'
			}
			changed = true
		}
		off += len(entry) + 1
	}
	if !changed {
		return nil
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer mem.Close()
	_, err = mem.WriteAt(block, int64(start))
	return err
}

// envBounds reads env_start and env_end, fields 50 and 51 of /proc/self/stat (proc(5)).
func envBounds() (uint64, uint64, error) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, errors.New("unparsable /proc/self/stat")
	}
	f := strings.Fields(string(data[i+1:])) // f[0] is field 3 (state)
	if len(f) < 49 {
		return 0, 0, errors.New("/proc/self/stat has no env_start/env_end (kernel older than 3.5)")
	}
	start, err1 := strconv.ParseUint(f[47], 10, 64)
	end, err2 := strconv.ParseUint(f[48], 10, 64)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, errors.New("unparsable env_start/env_end in /proc/self/stat")
	}
	return start, end, nil
}

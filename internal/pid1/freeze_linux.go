//go:build linux

package pid1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// maxFreezePasses bounds EndLeftovers; a tree that still grows after that many freeze passes is
// reported, not chased forever.
const maxFreezePasses = 10000

// EndLeftovers ends every process below this one so that none can outrun it: it freezes first
// and kills second, and repeats until a pass finds nothing.
//
// A single "SIGKILL every descendant" pass loses to a job that keeps forking chains (each link
// starts the next and exits): the link born after the scan survives. Here each round scans /proc,
// sends SIGSTOP to every live descendant not yet stopped, and scans again until a scan finds no
// running one: a stopped process cannot fork, so what a scan misses was born before its parent
// stopped and is found by the next scan. Only then does every frozen process get SIGKILL, each by
// its own PID (never a group, never -1). The round repeats until a scan finds no live descendant
// at all (zombies are the reaper's). It returns how many processes it killed.
//
// The supervisor calls it before anything that handles a secret (a registration, a listener
// start), when no agent process of its own should be left.
func EndLeftovers(ctx context.Context) (int, error) {
	me := os.Getpid()
	killed := 0
	for pass := 0; ; pass++ {
		if pass >= maxFreezePasses {
			return killed, fmt.Errorf("processes left by jobs kept appearing after %d freeze passes", maxFreezePasses)
		}
		if err := ctx.Err(); err != nil {
			return killed, err
		}
		frozen, err := freezeAll(ctx, me)
		if err != nil {
			return killed, err
		}
		if len(frozen) == 0 {
			return killed, nil
		}
		for _, pid := range frozen {
			if unix.Kill(pid, unix.SIGKILL) == nil {
				killed++
			}
		}
		// Wait (briefly, by polling the condition) until the killed processes are no longer live:
		// a process that got SIGKILL is gone or a zombie in microseconds.
		deadline := time.Now().Add(5 * time.Second)
		for anyLive(frozen) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}

// freezeAll stops every live descendant of pid until a scan finds none running, and returns the
// live descendants (all stopped) of the last scan.
func freezeAll(ctx context.Context, pid int) ([]int, error) {
	for pass := 0; pass < maxFreezePasses; pass++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		procs, err := readProcs("/proc")
		if err != nil {
			return nil, err
		}
		state := map[int]byte{}
		for _, p := range procs {
			state[p.Pid] = p.State
		}
		var live []int
		running := 0
		for _, d := range descendants(procs, pid) {
			st := state[d]
			if st == 'Z' || st == 'X' || d <= 1 {
				continue
			}
			live = append(live, d)
			if st != 'T' && st != 't' && !stopPending(d) {
				running++
				_ = unix.Kill(d, unix.SIGSTOP)
			}
		}
		if running == 0 {
			return live, nil
		}
	}
	return nil, errors.New("processes left by jobs could not be frozen: new ones kept appearing")
}

// anyLive reports whether one of pids is still a live (not zombie) process.
func anyLive(pids []int) bool {
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if st, ok := parseStat(pid, data); ok && st.State != 'Z' && st.State != 'X' {
			return true
		}
	}
	return false
}

// stopPending reports whether SIGSTOP is pending for pid (SigPnd or ShdPnd of /proc/PID/status).
// Such a process stops before it runs another instruction of its own, so it cannot fork: it
// counts as frozen even while the kernel still shows it running or in an uninterruptible wait (a
// vfork parent whose child was stopped before it could exec stays in "D" until it is killed).
// A SIGCONT from a process not yet stopped discards the pending stop, and the next scan sends it
// again.
func stopPending(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	const bit = uint64(1) << (uint(unix.SIGSTOP) - 1)
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigPnd" && k != "ShdPnd") {
			continue
		}
		if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && mask&bit != 0 {
			return true
		}
	}
	return false
}

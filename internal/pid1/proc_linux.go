//go:build linux

package pid1

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// procStat is the part of /proc/<pid>/stat this package needs.
type procStat struct {
	Pid, PPid int
	State     byte // R, S, D, Z, T, ...
	Comm      string
}

// readProcs lists the processes visible in a procfs mounted at root.
func readProcs(root string) ([]procStat, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list processes in %s: %w", root, err)
	}
	var out []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		if st, ok := parseStat(pid, data); ok {
			out = append(out, st)
		}
	}
	return out, nil
}

// parseStat parses "pid (comm) state ppid ...". comm may hold spaces and parentheses, so the
// fields after it are found from the last ')'.
func parseStat(pid int, data []byte) (procStat, bool) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	rest := bytes.Fields(data[end+1:])
	if len(rest) < 2 || len(rest[0]) != 1 {
		return procStat{}, false
	}
	ppid, err := strconv.Atoi(string(rest[1]))
	if err != nil {
		return procStat{}, false
	}
	return procStat{Pid: pid, PPid: ppid, State: rest[0][0], Comm: string(data[open+1 : end])}, true
}

// descendants lists every process below pid (not pid itself), deepest last.
func descendants(procs []procStat, pid int) []int {
	kids := map[int][]int{}
	for _, p := range procs {
		kids[p.PPid] = append(kids[p.PPid], p.Pid)
	}
	var out []int
	queue := []int{pid}
	seen := map[int]bool{pid: true}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, k := range kids[cur] {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
				queue = append(queue, k)
			}
		}
	}
	return out
}

// Children lists the PIDs of this process's children (zombies included) from /proc.
func Children() ([]int, error) {
	procs, err := readProcs("/proc")
	if err != nil {
		return nil, err
	}
	me := os.Getpid()
	var out []int
	for _, p := range procs {
		if p.PPid == me && p.Pid != me {
			out = append(out, p.Pid)
		}
	}
	return out, nil
}

// KillDescendants sends SIGKILL to every process below this one, each by its PID (never a group,
// never -1), and returns how many it signalled. The supervisor uses it when no agent process
// should be left: what remains then is what jobs left behind, which must not see what comes next
// (a configure process with a token in its environment runs as the same user as jobs).
func KillDescendants() (int, error) {
	procs, err := readProcs("/proc")
	if err != nil {
		return 0, err
	}
	me := os.Getpid()
	n := 0
	for _, pid := range descendants(procs, me) {
		if pid > 1 && pid != me && unix.Kill(pid, unix.SIGKILL) == nil {
			n++
		}
	}
	return n, nil
}

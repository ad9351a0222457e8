package supervisor

import (
	"os"
	"strconv"
	"strings"
)

// workerName is the real agent's job process, which the listener starts as
// bin/Agent.Worker spawnclient <fds> for every job (JobDispatcher.RunAsync, ProcessChannel) and
// which lives exactly as long as the job runs on this agent.
const workerName = "Agent.Worker"

// workerBelow reports whether an Agent.Worker process runs below pid (its child, or deeper). It
// reads /proc: a job's leftovers are reparented to PID 1 when their worker ends, so nothing a
// finished job left behind counts, and a job's own process can only be below a live worker.
func workerBelow(pid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	parent := map[int]int{}
	var workers []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, ppid, ok := procStat(n)
		if !ok {
			continue
		}
		parent[n] = ppid
		if comm == workerName {
			workers = append(workers, n)
		}
	}
	for _, w := range workers {
		for p, depth := parent[w], 0; p > 0 && depth < 64; p, depth = parent[p], depth+1 {
			if p == pid {
				return true
			}
		}
	}
	return false
}

// procStat reads a process's command name and parent from /proc/<pid>/stat. The name is
// between the first "(" and the last ")": it may itself hold spaces and parentheses.
func procStat(pid int) (comm string, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	s := string(data)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	return s[open+1 : end], ppid, err == nil
}

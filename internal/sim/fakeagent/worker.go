package fakeagent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TaskResult values; the worker's exit code is 100 + result (TaskResultUtil.TranslateToReturnCode).
const (
	taskSucceeded = 0
	taskFailed    = 2
	taskCanceled  = 3
)

// WorkerMain runs the fake Agent.Worker: `Agent.Worker spawnclient <fd>`. It reads the job from the
// pipe on fd, ignores SIGINT like the real worker, optionally leaves orphan processes behind, sleeps
// the job's duration and exits 100+result. A "cancel" or "shutdown" line on the pipe ends the job as
// Canceled after the job's ignoreCancelMs. If the listener dies (EOF), the job just runs to its end.
func WorkerMain(args []string) int {
	signal.Ignore(syscall.SIGINT)
	fd := 3
	if len(args) >= 2 && strings.EqualFold(args[0], "spawnclient") {
		if n, err := strconv.Atoi(args[1]); err == nil {
			fd = n
		}
	}
	root, err := findRoot()
	if err != nil {
		return 100 + taskFailed
	}
	out := newOutput(root, "Worker")
	defer out.close()
	in := bufio.NewReader(os.NewFile(uintptr(fd), "listener-channel"))
	first, err := in.ReadString('\n')
	if err != nil && first == "" {
		out.tracef("no job on fd %d: %v", fd, err)
		return 100 + taskFailed
	}
	var job JobBody
	if err := json.Unmarshal([]byte(first), &job); err != nil {
		out.tracef("bad job: %v", err)
		return 100 + taskFailed
	}
	out.tracef("Agent.Worker pid=%d job %s (%s) request %d: %+v", os.Getpid(), job.JobID, job.JobDisplayName, job.RequestID, job.Sim)
	cancel := make(chan struct{})
	var once sync.Once
	go readLines(in, func(s string) {
		out.tracef("listener says %q", s)
		if s == "cancel" || s == "shutdown" {
			once.Do(func() { close(cancel) })
		}
	})
	secs := job.Sim.OrphanSeconds
	if secs <= 0 {
		secs = int(envDuration(EnvOrphanSeconds, 60*time.Second) / time.Second)
	}
	for i := 0; i < job.Sim.Orphans; i++ {
		pid, err := spawnOrphan(root, secs)
		if err != nil {
			out.tracef("spawn orphan: %v", err)
			continue
		}
		out.tracef("Started orphan process pid=%d", pid)
	}
	result := taskSucceeded
	if strings.EqualFold(job.Sim.Result, "failed") {
		result = taskFailed
	}
	select {
	case <-time.After(time.Duration(job.Sim.DurationMs) * time.Millisecond):
	case <-cancel:
		d := cancelTime(job.Sim)
		out.tracef("job canceled; the step ends in %v", d)
		time.Sleep(d)
		result = taskCanceled
	}
	out.tracef("job finished with result %d", result)
	return 100 + result
}

// spawnOrphan double-forks: an intermediate process starts the orphan and exits at once, so the
// orphan is reparented (to the nearest subreaper or init) while the worker is still running.
func spawnOrphan(root *agentRoot, secs int) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	c := exec.Command(self, RoleOrphan, "spawn", strconv.Itoa(secs), root.dir)
	b, err := c.Output()
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// OrphanMain: `fake-orphan spawn <secs> <root>` starts `fake-orphan sleep <secs> <root>`, prints its pid
// and exits; `fake-orphan sleep <secs> <root>` sleeps (the root is only there to find it in /proc).
func OrphanMain(args []string) int {
	if len(args) < 2 {
		return 2
	}
	secs, _ := strconv.Atoi(args[1])
	switch args[0] {
	case "spawn":
		self, err := os.Executable()
		if err != nil {
			return 1
		}
		c := exec.Command(self, append([]string{RoleOrphan, "sleep"}, args[1:]...)...)
		if err := c.Start(); err != nil {
			return 1
		}
		fmt.Println(c.Process.Pid)
		return 0
	case "sleep":
		time.Sleep(time.Duration(secs) * time.Second)
		return 0
	}
	return 2
}

// cancelTime is how long cancelling the job's step takes, the way the real worker stops a step
// process (ProcessInvoker.CancelAndKillProcessTree, src/Agent.Sdk/ProcessInvoker.cs): SIGINT, then
// up to PROCESS_SIGINT_TIMEOUT (AgentKnobs.ProccessSigintTimeout, default 7500 ms) for it to end,
// then SIGTERM and up to PROCESS_SIGTERM_TIMEOUT (default 2500 ms), then SIGKILL. The fake step
// ends IgnoreCancelMs after the SIGINT (< 0: at once); 0, the default, is a step that ignores both
// signals, so cancelling takes the full 10 s of the real defaults. A test that wants shorter
// cancels says so explicitly: SigintTimeoutMs/SigtermTimeoutMs in the job, or the real knobs in the
// agent's environment.
func cancelTime(s JobSpec) time.Duration {
	sigint := knobMs("PROCESS_SIGINT_TIMEOUT", 7500, s.SigintTimeoutMs)
	sigterm := knobMs("PROCESS_SIGTERM_TIMEOUT", 2500, s.SigtermTimeoutMs)
	switch {
	case s.IgnoreCancelMs < 0:
		return 0
	case s.IgnoreCancelMs == 0:
		return sigint + sigterm
	}
	return min(time.Duration(s.IgnoreCancelMs)*time.Millisecond, sigint+sigterm)
}

// knobMs reads a millisecond knob: the job's override (> 0 or < 0 for zero), else the environment
// variable, else the built-in default.
func knobMs(env string, def int64, override int64) time.Duration {
	switch {
	case override > 0:
		return time.Duration(override) * time.Millisecond
	case override < 0:
		return 0
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(os.Getenv(env)), 10, 64); err == nil && n >= 0 {
		return time.Duration(n) * time.Millisecond
	}
	return time.Duration(def) * time.Millisecond
}

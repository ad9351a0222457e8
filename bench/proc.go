//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The benchmark is a child subreaper: whatever its children leave behind (start.sh's listener keeps
// running after start.sh exits, which is one of the baseline's flaws) is re-parented to it and ended
// by killStrays, by PID. Nothing outside the processes it started is ever signalled.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// syncBuffer collects a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one measured child process.
type proc struct {
	name  string
	cmd   *exec.Cmd
	out   *syncBuffer
	start time.Time // just before fork/exec
	end   time.Time // when the exit was seen
	done  chan struct{}
	code  int
	// maxRSS is the peak resident set of the process itself (VmHWM sampled while it runs), in
	// bytes, valid after done.
	maxRSS int64
}

func startProc(name, dir string, env []string, argv ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = dir, env
	p := &proc{name: name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	// The peak resident set is read from /proc/PID/status (VmHWM, which only grows) while the
	// process runs: the rusage of the reaped child is no good, since exec records the forked copy
	// of this (large) benchmark process's memory into the child's ru_maxrss (Linux exec_mmap,
	// setmax_mm_hiwater_rss), so every child would seem at least as big as the benchmark itself.
	hwm := make(chan int64, 1)
	stop := make(chan struct{})
	go func() {
		var peak int64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := vmHWM(cmd.Process.Pid); err == nil && v > peak {
				peak = v
			}
			select {
			case <-stop:
				hwm <- peak
				return
			case <-t.C:
			}
		}
	}()
	go func() {
		cmd.Wait()
		close(stop)
		p.end = time.Now()
		p.code = cmd.ProcessState.ExitCode()
		p.maxRSS = <-hwm
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// wait waits for the process to exit; false on timeout.
func (p *proc) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// kill ends the process (SIGKILL, by PID) if it still runs, and reaps it.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) signal(sig syscall.Signal) error { return syscall.Kill(p.pid(), sig) }

// tail is the end of the output, for error messages.
func (p *proc) tail(n int) string {
	s := strings.TrimSpace(p.out.String())
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run starts a process and waits for it; the duration is wall time from fork to exit.
func runProc(name, dir string, env []string, timeout time.Duration, argv ...string) (time.Duration, *proc, error) {
	p, err := startProc(name, dir, env, argv...)
	if err != nil {
		return 0, nil, err
	}
	if !p.wait(timeout) {
		p.kill()
		return 0, p, fmt.Errorf("%s did not finish within %s:\n%s", name, timeout, p.tail(20))
	}
	d := p.end.Sub(p.start)
	if p.code != 0 {
		return d, p, fmt.Errorf("%s exited %d:\n%s", name, p.code, p.tail(20))
	}
	return d, p, nil
}

// logRecord is one JSON log line of the entrypoint.
type logRecord struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

// records parses the entrypoint's JSON log lines (other lines are skipped).
func records(out string) []logRecord {
	var recs []logRecord
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r logRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Msg != "" {
			recs = append(recs, r)
		}
	}
	return recs
}

// firstRecord is the time of the first record whose message is msg.
func firstRecord(recs []logRecord, msg string) (time.Time, bool) {
	for _, r := range recs {
		if r.Msg == msg {
			return r.Time, true
		}
	}
	return time.Time{}, false
}

// vmHWM reads the peak resident set size ("VmHWM") of a process, in bytes.
func vmHWM(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// children lists the PIDs whose parent is this process, from /proc/<pid>/stat.
func children() []int {
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: the fields start after the last ')'.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 2 {
			if ppid, _ := strconv.Atoi(f[1]); ppid == self {
				out = append(out, pid)
			}
		}
	}
	return out
}

// killStrays ends every child process that no measured proc is waiting for: processes that
// outlived their parent and were re-parented to the benchmark. It must only be called when no
// proc is running. It returns how many it found.
func killStrays() int {
	n := 0
	for round := 0; round < 50; round++ {
		pids := children()
		if len(pids) == 0 {
			return n
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
			n++
		}
		// A killed parent's own children are re-parented to us in turn.
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

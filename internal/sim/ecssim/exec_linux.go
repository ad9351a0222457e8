//go:build linux

package ecssim

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs/ecstest"
)

// ExecLauncher runs each task's container as a real process: Binary (the azp-entrypoint) as PID 1
// of its own PID namespace (`unshare --pid --fork --mount-proc --kill-child`, which needs root),
// with the container's environment, and the endpoints ECS gives a Fargate container: task metadata
// v4 (ECS_CONTAINER_METADATA_URI_V4) and the ECS agent's task-protection endpoint (ECS_AGENT_URI),
// served by an ecstest fake per task. Standalone tasks (RunTask) cannot be protected: the
// protection endpoint answers TASK_NOT_VALID (developer guide, "Protect your Amazon ECS tasks from
// being terminated by scale-in events": "task scale-in protection ... only for tasks that are part
// of a service").
//
// A container has its own filesystem in ECS; here each task gets a directory under Dir and the
// variables in TaskDirEnv point into it (for example AZP_AGENT_DIR, AZP_STATE_DIR, HOME), so that
// tasks do not share an agent directory.
type ExecLauncher struct {
	Binary string
	Dir    string
	// TaskDirEnv maps a variable to a path relative to the task's directory; it is set unless
	// the container's environment sets it.
	TaskDirEnv map[string]string
	// Output receives each container's output, prefixed with the task id; nil: a log file per
	// task in its directory.
	Output io.Writer
	Region string
}

type execProcess struct {
	cmd    *exec.Cmd
	done   chan struct{}
	code   int
	meta   *ecstest.Server
	logf   *os.File
	pidMu  sync.Mutex
	pidVal int
	killed bool
}

// Launch starts the container.
func (l *ExecLauncher) Launch(_ context.Context, spec LaunchSpec) (Process, error) {
	if _, err := os.Stat(l.Binary); err != nil {
		return nil, fmt.Errorf("image entrypoint %s: %w", l.Binary, err)
	}
	dir := filepath.Join(l.Dir, spec.TaskID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	meta := ecstest.New(ecstest.Options{Region: l.Region, Cluster: spec.Cluster, TaskID: spec.TaskID, Family: spec.Family,
		Revision: strconv.Itoa(spec.Revision), ContainerName: spec.Container, Standalone: true, LaunchType: "FARGATE"})
	env := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": "ip-10-0-0-" + spec.TaskID[:4]}
	for k, v := range l.TaskDirEnv {
		env[k] = filepath.Join(dir, v)
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	// Injected by ECS into every container, after the user's environment.
	for k, v := range meta.Env() {
		if strings.HasPrefix(k, "AWS_CONTAINER_") {
			continue // no task role in the simulator
		}
		env[k] = v
	}
	args := append([]string{"--pid", "--fork", "--mount-proc", "--kill-child", l.Binary}, spec.Command...)
	cmd := exec.Command("unshare", args...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = dir
	p := &execProcess{cmd: cmd, done: make(chan struct{}), meta: meta}
	if l.Output != nil {
		w := &prefixWriter{w: l.Output, prefix: "[" + spec.TaskID[:8] + "] "}
		cmd.Stdout, cmd.Stderr = w, w
	} else {
		f, err := os.Create(filepath.Join(dir, "container.log"))
		if err != nil {
			meta.Close()
			return nil, err
		}
		p.logf = f
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		meta.Close()
		if p.logf != nil {
			p.logf.Close()
		}
		return nil, err
	}
	go func() {
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		p.pidMu.Lock()
		if p.killed {
			// unshare reports its child's SIGKILL as its own failure; the container's exit code
			// is what Docker reports for SIGKILL: 128 + 9.
			p.code = 137
		}
		p.pidMu.Unlock()
		meta.Close()
		if p.logf != nil {
			p.logf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

func (p *execProcess) Done() <-chan struct{} { return p.done }
func (p *execProcess) ExitCode() int         { <-p.done; return p.code }

// pid is the container's PID 1 as seen from here: the only child of unshare.
func (p *execProcess) pid() int {
	p.pidMu.Lock()
	defer p.pidMu.Unlock()
	if p.pidVal > 0 {
		return p.pidVal
	}
	u := p.cmd.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", u, u))
		if err != nil {
			return 0
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			p.pidVal, _ = strconv.Atoi(f[0])
			return p.pidVal
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}

// Terminate sends SIGTERM to the container's PID 1 alone, as `docker stop` does.
func (p *execProcess) Terminate() { p.signal(syscall.SIGTERM) }

// Kill sends SIGKILL to the container's PID 1; the kernel then kills its whole PID namespace.
func (p *execProcess) Kill() { p.signal(syscall.SIGKILL) }

func (p *execProcess) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	if sig == syscall.SIGKILL {
		p.pidMu.Lock()
		p.killed = true
		p.pidMu.Unlock()
	}
	if pid := p.pid(); pid > 0 {
		syscall.Kill(pid, sig)
	} else if sig == syscall.SIGKILL {
		p.cmd.Process.Kill() // unshare itself: --kill-child takes the namespace down with it
	}
}

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexByte(string(p.buf), '\n')
		if i < 0 {
			break
		}
		p.w.Write(append([]byte(p.prefix), p.buf[:i+1]...))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

package ecssim

import (
	"context"
	"sync"
	"time"
)

// LaunchSpec is what a Launcher gets to start a task's essential container.
type LaunchSpec struct {
	TaskARN, TaskID, Cluster, Family string
	Revision                         int
	Container                        string
	// Env is the container's environment: the task definition's, then the overrides' (an override
	// replaces a variable of the same name, as ECS documents for containerOverrides.environment),
	// then the variables ECS itself injects (metadata and agent URIs, region).
	Env     map[string]string
	Command []string
}

// Process is a started container.
type Process interface {
	// Done is closed when the container has exited; ExitCode is valid then.
	Done() <-chan struct{}
	ExitCode() int
	// Terminate sends SIGTERM, Kill SIGKILL, to the container's main process alone.
	Terminate()
	Kill()
}

// Launcher starts a task's container.
type Launcher interface {
	Launch(ctx context.Context, spec LaunchSpec) (Process, error)
}

// LauncherFunc adapts a function.
type LauncherFunc func(ctx context.Context, spec LaunchSpec) (Process, error)

// Launch calls f.
func (f LauncherFunc) Launch(ctx context.Context, spec LaunchSpec) (Process, error) {
	return f(ctx, spec)
}

// FakeProcess is an in-memory container for tests without root: it runs until Exit is called or
// it is stopped (Terminate exits with 0 after TermDelay unless IgnoreTerm; Kill exits with 137).
type FakeProcess struct {
	Spec       LaunchSpec
	TermDelay  time.Duration
	IgnoreTerm bool

	once sync.Once
	done chan struct{}
	mu   sync.Mutex
	code int
	// Terms counts the SIGTERMs received.
	Terms int
}

// NewFakeProcess returns a running fake.
func NewFakeProcess(spec LaunchSpec) *FakeProcess {
	return &FakeProcess{Spec: spec, done: make(chan struct{})}
}

// Exit ends the fake with code.
func (p *FakeProcess) Exit(code int) {
	p.once.Do(func() {
		p.mu.Lock()
		p.code = code
		p.mu.Unlock()
		close(p.done)
	})
}

func (p *FakeProcess) Done() <-chan struct{} { return p.done }
func (p *FakeProcess) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code
}
func (p *FakeProcess) Terminate() {
	p.mu.Lock()
	p.Terms++
	ignore, d := p.IgnoreTerm, p.TermDelay
	p.mu.Unlock()
	if ignore {
		return
	}
	time.AfterFunc(d, func() { p.Exit(0) })
}
func (p *FakeProcess) Kill() { p.Exit(137) }

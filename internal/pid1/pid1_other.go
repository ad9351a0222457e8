//go:build !linux

package pid1

// This file lets the module build (and go vet run) on other systems. The entrypoint only runs on
// Linux; here every operation reports errors.ErrUnsupported.

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

const StdioGrace = 2 * time.Second

var StopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

func Notify(ctx context.Context) <-chan os.Signal {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, StopSignals...)
	go func() { <-ctx.Done(); signal.Stop(ch) }()
	return ch
}

func IsInit() bool                              { return false }
func BecomeSubreaper() (bool, error)            { return false, errors.ErrUnsupported }
func IsSubreaper() (bool, error)                { return false, errors.ErrUnsupported }
func Children() ([]int, error)                  { return nil, errors.ErrUnsupported }
func KillDescendants() (int, error)             { return 0, errors.ErrUnsupported }
func EndLeftovers(context.Context) (int, error) { return 0, errors.ErrUnsupported }
func PrepareCmd(cmd *exec.Cmd, u *User)         {}

type Reaper struct{}

func NewReaper(log *slog.Logger) (*Reaper, error)              { return nil, errors.ErrUnsupported }
func Setup(log *slog.Logger) (*Reaper, error)                  { return nil, errors.ErrUnsupported }
func (r *Reaper) Close() error                                 { return nil }
func (r *Reaper) Kick()                                        {}
func (r *Reaper) Orphans() int                                 { return 0 }
func (r *Reaper) Start(cmd *exec.Cmd) (*Process, error)        { return nil, errors.ErrUnsupported }
func (r *Reaper) Run(ctx context.Context, cmd *exec.Cmd) error { return errors.ErrUnsupported }
func (r *Reaper) WaitChildren(ctx context.Context) error       { return errors.ErrUnsupported }

type Process struct{ Pid int }

func (p *Process) Done() <-chan struct{}          { return nil }
func (p *Process) Wait(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func (p *Process) Status() syscall.WaitStatus     { var ws syscall.WaitStatus; return ws }
func (p *Process) Exited() bool                   { return false }
func (p *Process) ExitCode() int                  { return -1 }
func (p *Process) Signal(sig os.Signal) error     { return errors.ErrUnsupported }
func (p *Process) KillTree()                      {}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
)

// supervise is lifecycle step 6: run the listener and act on its exits (Decide) until a stop.
func (sv *supervisor) supervise(ctx context.Context, reg *registration) error {
	job := &jobState{state: sv.state, protector: sv.protector, log: sv.log}
	var hist History
	for {
		if sv.stop.isRequested() {
			return sv.finishStop(reg)
		}
		if sv.outcome == "" {
			sv.outcome = outcomeDrained
		}
		msgs := loadMessages(sv.s.AgentDir, sv.env)
		c, err := sv.startListener(msgs)
		if err != nil {
			return sv.fatal(reg, exit.Runtime(err))
		}
		if stopped, err := sv.watch(c, job, reg); stopped {
			return err
		}
		sv.state.phase(PhaseExited)
		e := Exit{Code: c.proc.ExitCode(), Ran: time.Since(c.start), Stopping: sv.stop.isRequested()}
		var f Facts
		if !e.Stopping {
			e.Lines = c.lastLines()
			e.Said = msgs.classifyFailure(e.Lines)
			f = sv.facts(ctx, e, reg)
		}
		job.set(false, "")
		var d Decision
		d, hist = Decide(e, f, hist)
		switch d.Action {
		case Finish:
			if !e.Stopping {
				sv.log.Info("the listener finished", "once", sv.s.Once)
			}
			return sv.finishStop(reg)
		case Fatal:
			return sv.fatal(reg, exit.Runtime(fmt.Errorf("the listener of agent %q %s", sv.name, d.Reason)))
		case Reconfigure:
			sv.log.Warn("the listener "+d.Reason+"; configuring it again", "exit_code", e.Code)
			if err := sv.reconfigure(ctx, reg); err != nil {
				return err
			}
			continue
		case WaitUpdate:
			if err := sv.waitUpdate(ctx, c); err != nil {
				if sv.stop.isRequested() {
					return sv.finishStop(reg)
				}
				return sv.fatal(reg, err)
			}
			continue // relaunch at once with the same arguments, registration kept
		}
		// Relaunch, Backoff.
		sv.log.Warn("the listener exited; relaunching after a pause", "exit_code", e.Code, "reason", d.Reason, "backoff", d.Wait.String())
		sv.state.phase(PhaseBackoff)
		t := time.NewTimer(d.Wait)
		select {
		case <-t.C:
		case <-sv.stop.requested:
			t.Stop()
		}
	}
}

// facts confirms what the listener's exit may mean, outside its output: the server is asked about
// the agent after an exit 1, and the agent root is checked for its credentials after any failure.
func (sv *supervisor) facts(ctx context.Context, e Exit, reg *registration) Facts {
	var f Facts
	if e.Code != 0 && e.Code != 3 && e.Code != 4 {
		f.CredentialsMissing = credentialsMissing(sv.s.AgentDir)
	}
	if e.Code == 1 && !f.CredentialsMissing {
		actx, cancel := sv.stop.context(ctx)
		defer cancel()
		actx, cancel2 := context.WithTimeout(actx, serverCheckTimeout)
		defer cancel2()
		f.Agent = reg.fact(actx)
		sv.log.Info("asked the server about the agent after the listener's exit", "exit_code", e.Code, "agent", reg.name, "fact", f.Agent.String())
	}
	return f
}

// credentialsMissing reports whether the listener's credentials are gone from the agent root.
func credentialsMissing(agentDir string) bool {
	for _, f := range []string{".credentials", ".credentials_rsaparams"} {
		if _, err := os.Lstat(filepath.Join(agentDir, f)); errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// startListener launches `Agent.Listener run` as the agent's user.
func (sv *supervisor) startListener(msgs *messages) (*child, error) {
	args := []string{"run", "--startuptype", "service"}
	if sv.s.Once {
		args = append(args, "--once")
	}
	// Leftovers ended, planted root files removed, own .proxy/.certificates written (rest_register.go).
	if err := sv.beforeListenerStart(context.Background()); err != nil {
		return nil, err
	}
	cmd := exec.Command(listenerPath(sv.s.AgentDir), args...)
	cmd.Dir, cmd.Env = sv.s.AgentDir, sv.env
	pid1.PrepareCmd(cmd, sv.user)
	sv.state.phase(PhaseStarted)
	c, err := startClassified(sv.o.Reaper, cmd, sv.log, msgs.classify)
	if err != nil {
		return nil, fmt.Errorf("start the listener %s: %w", cmd.Path, err)
	}
	sv.log.Info("listener started", "pid", c.proc.Pid, "args", args, "culture", msgs.culture)
	return c, nil
}

// reconfigure answers MissingAgent: the registration is gone from the server, so it is made again.
func (sv *supervisor) reconfigure(ctx context.Context, reg *registration) error {
	reg.id = 0
	if err := wipeConfig(sv.s.AgentDir); err != nil {
		return sv.fatal(reg, exit.Runtime(err))
	}
	cctx, cancel := sv.stop.context(ctx)
	err := sv.configure(cctx, reg, true)
	cancel()
	if err == nil {
		return nil
	}
	if sv.stop.isRequested() {
		// A stop during configuration: it ends within setupStopLimit, as in setup.
		sv.state.phase(PhaseStopping)
		return reg.Remove(sv.abortDeadline())
	}
	return sv.fatal(reg, err)
}

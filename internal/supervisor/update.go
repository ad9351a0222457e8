package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// The agent's self-update (listener exits 3 and 4).

// waitUpdate handles exits 3 and 4: the listener staged a self-update and a detached script swaps
// bin once the listener's PID is gone (reaped by now). Wait for its result, then relaunch.
func (sv *supervisor) waitUpdate(ctx context.Context, c *child) error {
	s := sv.s
	sv.state.phase(PhaseUpdating)
	sv.log.Info("the agent is updating itself; waiting for the update to finish", "exit_code", c.proc.ExitCode())
	exited := time.Now().Add(-2 * time.Second)
	deadline := time.Now().Add(updateTimeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if result, ok := updateResult(s.AgentDir, exited); ok {
			if st, err := os.Stat(listenerPath(s.AgentDir)); err == nil && st.Mode()&0o111 != 0 {
				if result == "failed" {
					sv.log.Warn("the agent's self-update failed; relaunching the previous version")
				} else {
					sv.log.Info("the agent's self-update finished; relaunching")
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return exit.Runtime(fmt.Errorf("the agent's self-update did not finish within %s (no _diag/SelfUpdate-*.log.succeed in %s)", updateTimeout, s.AgentDir))
		}
		select {
		case <-tick.C:
		case <-sv.stop.requested:
			return errors.New("stop requested during self-update")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// updateResult finds the newest SelfUpdate log marked .succeed or .failed since t.
func updateResult(agentDir string, since time.Time) (string, bool) {
	matches, _ := filepath.Glob(filepath.Join(agentDir, "_diag", "SelfUpdate-*.log.*"))
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil || st.ModTime().Before(since) {
			continue
		}
		switch filepath.Ext(m) {
		case ".succeed":
			return "succeed", true
		case ".failed":
			return "failed", true
		}
	}
	return "", false
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	diag := diagDir(sv.env, s.AgentDir)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if result, ok := updateResult(diag, exited); ok {
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
			return exit.Runtime(fmt.Errorf("the agent's self-update did not finish within %s (no SelfUpdate-*.log.succeed or .failed in %s)", updateTimeout, diag))
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

// diagDir is where the listener writes its diagnostics, the self-update log among them:
// AGENT_DIAGLOGPATH when set in its environment, else _diag in the agent root
// (HostContext.GetDiagDirectory and GetDiagOrDefault, AgentKnobs.AgentDiagLogPath;
// SelfUpdater.GenerateUpdateScript names the log SelfUpdate-<yyyyMMdd-HHmmss>.log there).
func diagDir(env []string, agentDir string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "AGENT_DIAGLOGPATH="); ok {
			if v != "" {
				return v
			}
			break
		}
	}
	return filepath.Join(agentDir, "_diag")
}

// updateResult finds the newest SelfUpdate log in diag marked .succeed or .failed since t.
func updateResult(diag string, since time.Time) (string, bool) {
	matches, _ := filepath.Glob(filepath.Join(diag, "SelfUpdate-*.log.*"))
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

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
)

// Lifecycle step 5: the agent's registration on the server.

// configure is lifecycle step 5: skipped when the agent directory holds this agent's configuration
// and the server still knows it; otherwise unattended with --replace, secrets only in the
// configure process's VSTS_AGENT_INPUT_* environment.
func (sv *supervisor) configure(ctx context.Context, reg *registration, force bool) error {
	s := sv.s
	existing, err := readAgentFile(s.AgentDir)
	if err != nil {
		sv.log.Warn("unreadable agent configuration; configuring again", "err", err)
	}
	if !force && existing.matches(s.URL, s.Pool, sv.name, sv.work) {
		a, err := sv.server.Agent(ctx, reg.pool, sv.name)
		if err != nil {
			return err
		}
		if a != nil && a.ID == existing.AgentID {
			reg.id = a.ID
			sv.log.Info("reusing the agent's configuration", "agent_id", a.ID)
			if !a.Enabled {
				// A previous stop disabled it while draining (AZP_DEREGISTER=false keeps it).
				if err := sv.server.SetEnabled(ctx, reg.pool, a.ID, true); err != nil {
					return err
				}
			}
			return nil
		}
		sv.log.Info("the server no longer knows the configured agent; configuring again", "agent_id", existing.AgentID)
	}
	if existing != nil {
		if err := wipeConfig(s.AgentDir); err != nil {
			return exit.Runtime(fmt.Errorf("remove the old agent configuration in %s: %w", s.AgentDir, err))
		}
	}

	cred, err := sv.o.Creds.Credential(ctx)
	if err != nil {
		return err
	}
	args := []string{"configure", "--unattended", "--url", s.URL, "--pool", s.Pool, "--agent", sv.name,
		"--work", sv.work, "--replace", "--acceptTeeEula"}
	input := map[string]string{}
	if cred.IsServicePrincipal() {
		args = append(args, "--auth", "SP")
		input["VSTS_AGENT_INPUT_CLIENTID"], input["VSTS_AGENT_INPUT_TENANTID"], input["VSTS_AGENT_INPUT_CLIENTSECRET"] = cred.ClientID, cred.TenantID, cred.ClientSecret
	} else {
		args = append(args, "--auth", "PAT")
		input["VSTS_AGENT_INPUT_TOKEN"] = cred.PAT
	}
	if s.CACertFile != "" {
		rel, err := sv.copyCACert()
		if err != nil {
			return err
		}
		args = append(args, "--sslcacert", rel)
	}
	env := append(append([]string(nil), sv.env...), envList(input)...)

	sv.state.phase(PhaseConfiguring)
	reg.mayExist = true
	// The configure process holds the secret in its environment and runs as the same user as
	// jobs, so nothing a job left behind may still be running (on a reconfigure after MissingAgent,
	// which a job could provoke): end every process below us first, each by PID.
	if n, err := pid1.KillDescendants(); err != nil {
		return exit.Runtime(fmt.Errorf("end leftover processes before configuring: %w", err))
	} else if n > 0 {
		sv.log.Warn("ended processes left behind by jobs before configuring the agent", "count", n)
		sv.o.Reaper.Kick()
	}
	sv.log.Info("configuring the agent", "agent", sv.name, "pool", s.Pool, "work", sv.work)
	cctx, cancel := context.WithTimeout(ctx, configureTimeout)
	defer cancel()
	cmd := exec.Command(listenerPath(s.AgentDir), args...)
	cmd.Dir, cmd.Env = s.AgentDir, env
	pid1.PrepareCmd(cmd, sv.user)
	c, err := startChild(sv.o.Reaper, cmd, sv.log)
	if err != nil {
		return exit.Runtime(fmt.Errorf("start %s: %w", cmd.Path, err))
	}
	select {
	case <-c.proc.Done():
	case <-cctx.Done():
		c.proc.KillTree()
		<-c.proc.Done()
	}
	// Whatever happened, learn which agent now carries our name: it is ours to remove.
	if a, _ := readAgentFile(s.AgentDir); a != nil {
		reg.id = a.AgentID
	}
	if cctx.Err() != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return exit.Runtime(fmt.Errorf("configure the agent: no answer within %s", configureTimeout))
	}
	if code := c.proc.ExitCode(); code != 0 {
		return exit.Runtime(fmt.Errorf("configure the agent %q in pool %q: the agent's configure exited %d (its output is logged above with source=agent)", sv.name, s.Pool, code))
	}
	if reg.id == 0 {
		return exit.Runtime(fmt.Errorf("configure the agent: %s/.agent was not written", s.AgentDir))
	}
	sv.log.Info("agent registered", "agent", sv.name, "agent_id", reg.id)
	return nil
}

// copyCACert puts the CA bundle inside the agent root, where --sslcacert must point.
func (sv *supervisor) copyCACert() (string, error) {
	data, err := os.ReadFile(sv.s.CACertFile)
	if err != nil {
		return "", exit.Config(fmt.Errorf("AZP_CA_CERT_FILE %s: %w", sv.s.CACertFile, err))
	}
	const rel = ".azp-ca.pem"
	dst := filepath.Join(sv.s.AgentDir, rel)
	// The agent directory is writable by jobs: write a new file and rename it into place, which
	// replaces whatever is at dst (a planted symlink included) instead of writing through it.
	tmp, err := os.CreateTemp(sv.s.AgentDir, ".azp-ca-*.pem")
	if err == nil {
		_, err = tmp.Write(data)
		err = errors.Join(err, tmp.Chmod(0o644), tmp.Close())
		if err == nil {
			err = os.Rename(tmp.Name(), dst)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		return "", exit.Runtime(fmt.Errorf("write %s: %w", dst, err))
	}
	return rel, nil
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

package supervisor

import (
	"context"
	"fmt"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// Lifecycle step 5: the agent's registration on the server.

// configure is lifecycle step 5: skipped when the agent directory holds this agent's configuration
// and the server still knows it; otherwise the agent is added or replaced over REST with a new key,
// as `configure --unattended --replace` would, from this process.
func (sv *supervisor) configure(ctx context.Context, reg *registration, force bool) error {
	s := sv.s
	existing, err := readAgentFile(s.AgentDir)
	if err != nil {
		sv.log.Warn("unreadable agent configuration; configuring again", "err", err)
	}
	trusted, why := sv.registrationTrusted()
	if existing != nil && !trusted {
		sv.log.Warn("the agent's registration files are not the entrypoint's own; registering again", "why", why)
	}
	if !force && trusted && existing.matches(s.URL, s.Pool, sv.name, sv.work) {
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
		if err := sv.removeRegistrationFiles(); err != nil {
			return exit.Runtime(fmt.Errorf("remove the old agent configuration in %s: %w", s.AgentDir, err))
		}
	}
	// Registered over REST from this process (rest_register.go): no `configure` child exists, so
	// the credential never reaches a process a job could read.
	return sv.registerAgent(ctx, reg)
}

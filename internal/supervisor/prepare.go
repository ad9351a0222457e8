package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/workdir"
)

// Lifecycle steps 3 and 4: the agent package and the work directory.

// installPackage is lifecycle step 3.
func (sv *supervisor) installPackage(ctx context.Context) error {
	s := sv.s
	uid, gid := sv.uidgid()
	if sv.rootMode() {
		// Root mode: the package (bin, externals, scripts, marker) stays root's; the agent gets
		// only _diag and its work directory (rest_register.go).
		uid, gid = -1, -1
		if err := sv.secureAgentDir(); err != nil {
			return err
		}
	}
	m, err := agentpkg.Ensure(ctx, agentpkg.Options{
		Dir: s.AgentDir, Version: s.AgentVersion, Platform: s.AgentPlatform, CacheDir: s.AgentCache,
		UID: uid, GID: gid, HTTPClient: sv.o.HTTPClient, Logger: sv.log, Progress: sv.o.Progress,
	}, agentpkg.ServerLister(sv.server))
	if err != nil {
		return err
	}
	sv.log.Info("agent package ready", "version", m.Version, "platform", m.Platform, "dir", s.AgentDir)
	if sv.rootMode() {
		return sv.checkRootTree()
	}
	// Not root: the agent is our own user and writes _diag and, on self-update, bin.<version>
	// into its root.
	if sv.user != nil {
		if err := os.Lchown(s.AgentDir, sv.user.UID, sv.user.GID); err != nil {
			return exit.Runtime(fmt.Errorf("AZP_AGENT_DIR %s: give it to the agent's user: %w", s.AgentDir, err))
		}
	}
	return nil
}

// prepareWork is lifecycle step 4: it leases the work directory and builds the listener's
// environment. The caller releases the lease.
func (sv *supervisor) prepareWork(ctx context.Context) (*workdir.Lease, error) {
	s := sv.s
	uid, gid := sv.uidgid()
	var shared *bool
	switch s.WorkShared {
	case config.On:
		shared = new(bool)
		*shared = true
	case config.Off:
		shared = new(bool)
	}
	lease, err := workdir.Prepare(ctx, workdir.Options{
		Root: s.WorkPath(), Shared: shared, MinFree: s.WorkMinFree, UID: uid, GID: gid,
		Holder: workdir.Holder{Agent: sv.name, Task: sv.taskID}, Logger: sv.log,
	})
	if err != nil {
		return nil, err
	}
	sv.work = lease.Dir
	if s.ToolsDir != "" {
		if err := workdir.PrepareTools(s.ToolsDir, uid, gid); err != nil {
			return nil, errors.Join(err, lease.Release())
		}
	}
	extra := map[string]string{}
	if sv.rootMode() {
		// The agent tree is root's, so the listener cannot stage a self-update into it; it ignores
		// update messages when agent.disableupdate has any value (src/Agent.Listener/Agent.cs,
		// RunAsync). Updates come from a new image or AZP_AGENT_VERSION.
		extra["agent.disableupdate"] = "true"
	}
	if sv.user != nil {
		extra["HOME"], extra["USER"], extra["LOGNAME"] = sv.user.Home, sv.user.Name, sv.user.Name
	} else if os.Geteuid() == 0 {
		extra["AGENT_ALLOW_RUNASROOT"] = "1"
	}
	if s.CACertFile != "" {
		extra["NODE_EXTRA_CA_CERTS"] = s.CACertFile
	}
	sv.env = agentEnv(sv.o.Environ, s, extra)
	return lease, nil
}

package preflight

import (
	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/workdir"
)

// Local validates everything `run` needs on this machine, without the network, so that a bad
// directory is reported before the server is asked for anything and before any download:
//
//   - AZP_AGENT_DIR is a directory (not a file), and writable unless it already holds a package
//     that fits AZP_AGENT_VERSION (agentpkg.CheckDir);
//   - the work directory (AZP_WORK) is a directory on a writable volume with space (workdir.Check);
//   - the agent's user (uid, gid; -1 when the agent runs as the entrypoint's user) can reach the
//     work directory: every existing ancestor must let it search (x), and an existing work
//     directory it does not own must be writable for it by its mode bits, since only the top
//     directory's owner is ever changed.
//
// Errors name the setting and the path and are configuration errors (exit 2). The supervisor
// calls it right after resolving AZP_RUN_AS; `check` reports it.
func Local(s *config.Settings, uid, gid int) error {
	if _, _, err := agentpkg.CheckDir(agentOptions(s)); err != nil {
		return err
	}
	return localWork(s, uid, gid)
}

func localWork(s *config.Settings, uid, gid int) error {
	if _, err := workdir.Check(workdir.Options{Root: s.WorkPath(), MinFree: s.WorkMinFree, UID: uid, GID: gid}); err != nil {
		return err
	}
	if uid < 0 {
		return nil
	}
	return reachable(s.WorkPath(), uid, gid)
}

func agentOptions(s *config.Settings) agentpkg.Options {
	return agentpkg.Options{Dir: s.AgentDir, Version: s.AgentVersion, Platform: s.AgentPlatform, UID: -1, GID: -1}
}

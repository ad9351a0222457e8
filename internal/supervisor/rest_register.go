package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
	"github.com/azp-entrypoint/azp-entrypoint/internal/register"
	"github.com/azp-entrypoint/azp-entrypoint/internal/workdir"
)

// The registration stage. The entrypoint registers the agent over REST itself (internal/register,
// following the real agent's ConfigurationManager) instead of running `Agent.Listener configure`:
// the PAT, the client secret and the task role's credentials never reach a child process, on any
// path (first start, MissingAgent, restart, self-update). In root mode the agent tree is root's:
// the registration files are root:agent 0440, the package (bin, externals, scripts, marker) is not
// writable by the agent, and only _diag and the work directory are the agent's.

// rootMode reports whether the entrypoint runs as root and drops the agent to another user.
func (sv *supervisor) rootMode() bool { return sv.user != nil && os.Geteuid() == 0 }

// fileOwner is who owns the files the entrypoint writes into the agent root.
func (sv *supervisor) fileOwner() register.Owner {
	if sv.rootMode() {
		return register.RootOwned(sv.user.GID)
	}
	return register.Private()
}

// secureAgentDir applies the work root's symlink-ownership rule to AZP_AGENT_DIR before root
// installs into it or runs anything from it: a job's symlink is refused, and the agent directory
// and its parent are made root's when they are the agent's (images used to give /azp to it).
func (sv *supervisor) secureAgentDir() error {
	if !sv.rootMode() {
		return nil
	}
	resolved, repaired, err := workdir.SecureAgentDir(sv.s.AgentDir, sv.user.UID, sv.user.GID, true)
	if err != nil {
		return err
	}
	for _, r := range repaired {
		sv.log.Warn("AZP_AGENT_DIR: a directory the agent's user could change was given to root", "dir", r)
	}
	if resolved != sv.s.AgentDir {
		sv.log.Info("AZP_AGENT_DIR resolved", "from", sv.s.AgentDir, "to", resolved)
		sv.s.AgentDir = resolved
	}
	return nil
}

// endLeftovers ends every process jobs left behind (freeze, then kill, until a pass finds none)
// before anything that handles a secret or starts the listener.
func (sv *supervisor) endLeftovers(ctx context.Context, before string) error {
	n, err := pid1.EndLeftovers(ctx)
	if err != nil {
		return exit.Runtime(fmt.Errorf("end processes left by jobs before %s: %w", before, err))
	}
	if n > 0 {
		sv.log.Warn("ended processes left behind by jobs", "count", n, "before", before)
		if sv.o.Reaper != nil {
			sv.o.Reaper.Kick()
		}
	}
	return nil
}

// registerAgent adds or replaces the agent with a new key and writes its files.
func (sv *supervisor) registerAgent(ctx context.Context) error {
	s := sv.s
	if err := sv.endLeftovers(ctx, "registering the agent"); err != nil {
		return err
	}
	d, err := register.OpenDir(s.AgentDir)
	if err != nil {
		return exit.Config(fmt.Errorf("AZP_AGENT_DIR: %w", err))
	}
	defer d.Close()
	version := ""
	if m, err := agentpkg.Find(s.AgentDir); err == nil {
		version = m.Version
	}
	sv.state.phase(PhaseConfiguring)
	sv.configuring = true
	sv.log.Info("registering the agent", "agent", sv.name, "pool", s.Pool, "work", sv.work)
	res, err := register.Register(ctx, register.Options{
		Client: sv.server, Dir: d, Owner: sv.fileOwner(), Pool: s.Pool, Name: sv.name,
		Work: sv.work, Version: version, Logger: sv.log,
	})
	if err != nil {
		return err
	}
	sv.agentID = res.Settings.AgentID
	sv.log.Info("agent registered", "agent", sv.name, "agent_id", sv.agentID, "replaced", res.Replaced)
	return nil
}

// removeRegistrationFiles deletes the local registration through the directory descriptor.
func (sv *supervisor) removeRegistrationFiles() error {
	d, err := register.OpenDir(sv.s.AgentDir)
	if err != nil {
		return err
	}
	defer d.Close()
	var errs []error
	for _, f := range configFiles {
		errs = append(errs, d.Remove(f))
	}
	return errors.Join(errs...)
}

// beforeListenerStart runs before every listener start: leftovers ended, the listener-read files
// a job could have planted (.env, .path, .proxy*, .certificates*, .options) removed and the
// entrypoint's own .proxy and .certificates written, and _diag ready for the agent's user.
func (sv *supervisor) beforeListenerStart(ctx context.Context) error {
	s := sv.s
	if err := sv.endLeftovers(ctx, "starting the listener"); err != nil {
		return err
	}
	d, err := register.OpenDir(s.AgentDir)
	if err != nil {
		return exit.Config(fmt.Errorf("AZP_AGENT_DIR: %w", err))
	}
	defer d.Close()
	own := register.RootFiles{ProxyURL: firstNonEmpty(s.HTTPSProxy, s.HTTPProxy)}
	if s.CACertFile != "" {
		if own.CABundle, err = register.CABundle(s.CACertFile); err != nil {
			return exit.Config(err)
		}
	}
	foreign, err := d.Prepare(own, sv.fileOwner())
	if err != nil {
		return exit.Runtime(fmt.Errorf("prepare the agent directory: %w", err))
	}
	for _, f := range foreign {
		sv.log.Warn("removed a file the entrypoint did not write from the agent directory (a job may have planted it)", "file", filepath.Join(s.AgentDir, f))
	}
	if sv.rootMode() {
		if err := agentOwnedDir(s.AgentDir, "_diag", sv.user.UID, sv.user.GID); err != nil {
			return exit.Runtime(err)
		}
	}
	return nil
}

// agentOwnedDir makes dir/name a directory owned by uid:gid, created beneath a descriptor of dir
// and never through a link.
func agentOwnedDir(dir, name string, uid, gid int) error {
	dfd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS})
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	if err := unix.Mkdirat(dfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create %s/%s: %w", dir, name, err)
	}
	fd, err := unix.Openat2(dfd, name, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS})
	if err != nil {
		return fmt.Errorf("%s/%s is not a directory the entrypoint can use: %w", dir, name, err)
	}
	defer unix.Close(fd)
	return unix.Fchown(fd, uid, gid)
}

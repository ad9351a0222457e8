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
func (sv *supervisor) registerAgent(ctx context.Context, reg *registration) error {
	s := sv.s
	ctx, cancel := context.WithTimeout(ctx, configureTimeout)
	defer cancel()
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
	// From the first request on, an agent of our name may exist although its id is not known yet.
	reg.mayExist = true
	sv.log.Info("configuring the agent", "agent", sv.name, "pool", s.Pool, "work", sv.work, "how", "REST, from the entrypoint")
	res, err := register.Register(ctx, register.Options{
		Client: sv.server, Dir: d, Owner: sv.fileOwner(), Pool: s.Pool, Name: sv.name,
		Work: sv.work, Version: version, Logger: sv.log,
	})
	if err != nil {
		return err
	}
	reg.id = res.Settings.AgentID
	sv.log.Info("agent registered", "agent", sv.name, "agent_id", reg.id, "replaced", res.Replaced)
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

// registrationTrusted reports, in root mode, whether the registration files found in the agent
// root are ones the entrypoint wrote (root-owned regular files with one link, not writable by the
// agent); anything else (left by an older version's `configure`, or by a job) is registered anew.
func (sv *supervisor) registrationTrusted() (bool, string) {
	if !sv.rootMode() {
		return true, ""
	}
	for _, f := range []string{register.FileAgent, register.FileCredentials, register.FileKey} {
		var st unix.Stat_t
		p := filepath.Join(sv.s.AgentDir, f)
		if err := unix.Lstat(p, &st); err != nil {
			return false, p + ": " + err.Error()
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 || st.Uid != 0 || st.Mode&0o022 != 0 {
			return false, fmt.Sprintf("%s: not a root-owned file the agent cannot write (uid %d, mode %#o, %d links)", p, st.Uid, st.Mode, st.Nlink)
		}
	}
	return true, ""
}

// checkRootTree verifies, in root mode, that nothing in the agent tree that the listener runs or
// trusts is writable by the agent's user: every directory and file below the agent root (but
// _diag, the work directory and the registration files, which the entrypoint rewrites) is owned by
// root and not writable by group or others. A tree an earlier version gave to the agent may hold a
// job's replacement of bin/Agent.Listener; it is refused with what to do, not trusted.
func (sv *supervisor) checkRootTree() error {
	if !sv.rootMode() {
		return nil
	}
	root := sv.s.AgentDir
	skip := map[string]bool{filepath.Join(root, "_diag"): true, filepath.Join(root, "_work"): true,
		filepath.Clean(sv.s.WorkPath()): true}
	// The registration files and the listener-read settings are rewritten or removed before
	// they are used (configure, beforeListenerStart): they are judged there.
	for _, f := range append(append([]string(nil), configFiles...), ".env", ".path") {
		skip[filepath.Join(root, f)] = true
	}
	var bad []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil // vanished or unreadable: not ours to judge here
		}
		if skip[p] && d.IsDir() {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			return nil
		}
		if skip[p] {
			return nil
		}
		isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
		groupW := int(st.Gid) == sv.user.GID && st.Mode&0o020 != 0
		if st.Uid != 0 || (!isLink && (groupW || st.Mode&0o002 != 0)) {
			bad = append(bad, fmt.Sprintf("%s (uid %d, mode %04o)", p, st.Uid, st.Mode&0o7777))
			if len(bad) >= 5 {
				return filepath.SkipAll
			}
		}
		return nil
	})
	if err != nil {
		return exit.Runtime(fmt.Errorf("AZP_AGENT_DIR %s: inspect the agent tree: %w", root, err))
	}
	if len(bad) > 0 {
		return exit.Config(fmt.Errorf("AZP_AGENT_DIR %s: the agent tree is writable by the agent's user (%v), so a job could have replaced what the listener runs; "+
			"started as root, the entrypoint keeps the tree root's: delete the directory so that it is installed again, or bake the image without giving it to the agent (no chown -R agent)", root, bad))
	}
	return nil
}

//go:build linux

package workdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"golang.org/x/sys/unix"
)

const settingAgentDir = "AZP_AGENT_DIR"

// SecureAgentDir applies the work root's symlink-ownership rule to the agent directory, for the
// entrypoint running as root with the agent (and its jobs) as uid:gid. Root installs into that
// directory and executes what is in it, so a job must not be able to redirect or rewrite it:
//
//   - symlinks in the path are followed only when owned by root (resolveRoot): a job's link at
//     /azp/agent (after `mv agent x; ln -s /usr/local agent` in an agent-writable /azp) is refused;
//   - every existing directory from / down to the agent directory must be owned by root and not
//     writable by the agent user (owner, group or others); a sticky world-writable ancestor such
//     as /tmp is accepted, because a job cannot rename or remove root's entries in it.
//
// With repair, the agent directory itself and its parent (e.g. /azp, which images commonly give
// to the agent user) are given to root:root and have group and other write removed, through a
// descriptor opened without following links; any other offending ancestor is refused with an
// error naming it. It returns the resolved path and what it repaired. As non-root (the agent is
// the entrypoint's own user) nothing can be enforced and the path is only resolved.
func SecureAgentDir(path string, uid, gid int, repair bool) (string, []string, error) {
	p, err := absSetting(settingAgentDir, path)
	if err != nil {
		return "", nil, err
	}
	resolved, err := resolveRoot(settingAgentDir, p)
	if err != nil {
		return "", nil, err
	}
	if os.Geteuid() != 0 || uid < 0 {
		return resolved, nil, nil
	}
	parent := filepath.Dir(resolved)
	var repaired []string
	var chain []string
	for d := resolved; ; d = filepath.Dir(d) {
		chain = append([]string{d}, chain...)
		if d == "/" {
			break
		}
	}
	for _, d := range chain {
		var st unix.Stat_t
		if err := unix.Lstat(d, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				break // created by root later, root-owned
			}
			return "", repaired, accessError(settingAgentDir, d, "inspect", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return "", repaired, exit.Config(fmt.Errorf("%s %s: %s is not a directory", settingAgentDir, path, d))
		}
		why := agentCanChange(st, uid, gid, d == resolved)
		if why == "" {
			continue
		}
		if !repair || (d != resolved && d != parent) {
			return "", repaired, exit.Config(fmt.Errorf("%s %s: %s %s, so a job running as the agent's user could replace what root installs and runs there; "+
				"give it to root and remove group/other write (chown 0:0 %s; chmod go-w %s), or put the agent elsewhere", settingAgentDir, path, d, why, d, d))
		}
		if err := makeRootOwned(d); err != nil {
			return "", repaired, exit.Config(fmt.Errorf("%s %s: %s %s and cannot be given to root: %w", settingAgentDir, path, d, why, err))
		}
		repaired = append(repaired, fmt.Sprintf("%s (%s): now root:root, not writable by group or others", d, why))
	}
	return resolved, repaired, nil
}

// agentCanChange says why uid:gid may change directory entries in a directory ("" if it cannot).
func agentCanChange(st unix.Stat_t, uid, gid int, isTarget bool) string {
	mode := st.Mode & 0o7777
	switch {
	case int(st.Uid) == uid:
		return fmt.Sprintf("is owned by the agent's uid %d", uid)
	case st.Uid != 0:
		return fmt.Sprintf("is owned by uid %d, not root", st.Uid)
	}
	sticky := mode&unix.S_ISVTX != 0 && !isTarget
	switch {
	case int(st.Gid) == gid && mode&0o020 != 0 && !sticky:
		return fmt.Sprintf("is writable by the agent's group %d (mode %04o)", gid, mode)
	case mode&0o002 != 0 && !sticky:
		return fmt.Sprintf("is writable by everyone (mode %04o)", mode)
	}
	return ""
}

// makeRootOwned gives directory d to root:root and removes group and other write, through a
// descriptor opened without following a symlink.
func makeRootOwned(d string) error {
	fd, err := unix.Openat2(unix.AT_FDCWD, d, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if err := unix.Fchown(fd, 0, 0); err != nil {
		return err
	}
	return unix.Fchmod(fd, (st.Mode&0o7777)&^0o022)
}

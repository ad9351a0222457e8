//go:build linux

package pid1

import (
	"os/exec"
	"syscall"
)

// PrepareCmd sets what every supervised child gets: its own process group (Setpgid), so a
// terminal's Ctrl-C or anybody's group signal never reaches it through ours and our signals can
// target it alone; and, when u is not nil, its user: uid, gid and exactly u.Groups as
// supplementary groups (never the entrypoint's, i.e. root's, groups). It deliberately sets no
// Pdeathsig (it would fire when the forking OS thread exits, not when we do).
func PrepareCmd(cmd *exec.Cmd, u *User) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pgid = 0
	if u == nil {
		return
	}
	groups := make([]uint32, len(u.Groups))
	copy(groups, u.Groups)
	cmd.SysProcAttr.Credential = &syscall.Credential{
		Uid:         uint32(u.UID),
		Gid:         uint32(u.GID),
		Groups:      groups, // empty slice: setgroups(0, NULL) drops root's groups
		NoSetGroups: false,
	}
}

//go:build linux

package preflight

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// reachable checks, by owner and mode bits (no ACLs), that uid:gid can search every existing
// ancestor of the work directory and, when the work directory exists and is not uid's, write it:
// root can, so a check made as root proves nothing for the agent's user.
func reachable(work string, uid, gid int) error {
	if uid == 0 {
		return nil
	}
	abs, err := filepath.Abs(work)
	if err != nil {
		return nil
	}
	allowed := func(st *unix.Stat_t, bit uint32) bool {
		switch {
		case int(st.Uid) == uid:
			return st.Mode&(bit<<6) != 0
		case int(st.Gid) == gid:
			return st.Mode&(bit<<3) != 0
		}
		return st.Mode&bit != 0
	}
	var st unix.Stat_t
	exists := unix.Stat(abs, &st) == nil
	if exists && int(st.Uid) != uid && os.Geteuid() != 0 && !allowed(&st, 2) {
		return exit.Config(fmt.Errorf("AZP_WORK %s is owned by %d:%d (mode %04o): the agent's user %d:%d (AZP_RUN_AS) cannot write to it; chown it to %d:%d or make it writable for that user",
			abs, st.Uid, st.Gid, st.Mode&0o7777, uid, gid, uid, gid))
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		var ds unix.Stat_t
		if err := unix.Stat(dir, &ds); err == nil && !allowed(&ds, 1) {
			return exit.Config(fmt.Errorf("AZP_WORK %s cannot be reached by the agent's user %d:%d (AZP_RUN_AS): %s is owned by %d:%d with mode %04o, which does not let that user search it; put the work directory elsewhere or chmod o+x %s",
				abs, uid, gid, dir, ds.Uid, ds.Gid, ds.Mode&0o7777, dir))
		} else if err != nil && !errors.Is(err, unix.ENOENT) {
			return nil
		}
		if dir == "/" || dir == filepath.Dir(dir) {
			return nil
		}
	}
}

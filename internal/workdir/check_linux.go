//go:build linux

package workdir

import (
	"errors"
	"fmt"
	"os"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"golang.org/x/sys/unix"
)

// Check reports on the work directory for `azp-entrypoint check` without changing it (apart from
// a probe file that is removed at once) and without taking a slot. The error is the first
// error-level finding's, marked with its exit kind.
func Check(o Options) ([]Finding, error) {
	var out []Finding
	add := func(l Level, path, msg string, err error) {
		out = append(out, Finding{Level: l, Path: path, Message: msg, Err: err})
	}
	firstErr := func() error {
		for _, f := range out {
			if f.Level == LevelError {
				return f.Err
			}
		}
		return nil
	}
	root, m, err := openRoot(settingWork, o.Root)
	if err != nil {
		path := root
		if path == "" {
			path = o.Root
		}
		add(LevelError, path, err.Error(), err)
		return out, firstErr()
	}
	add(LevelInfo, root, "work directory on "+m.String(), nil)
	fi, err := os.Lstat(root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		anc, aerr := nearestExisting(root)
		if aerr == nil {
			if err := requireDir(settingWork, anc); err != nil {
				add(LevelError, anc, err.Error(), err)
				return out, firstErr()
			}
			if err := probeWritable(settingWork, anc, m); err != nil {
				add(LevelError, anc, err.Error(), err)
				return out, firstErr()
			}
		}
		add(LevelInfo, root, "does not exist yet; it will be created at start", nil)
	case err != nil:
		err = exit.Runtime(fmt.Errorf("%s %s: %w", settingWork, root, err))
		add(LevelError, root, err.Error(), err)
		return out, firstErr()
	case !fi.IsDir():
		err := requireDir(settingWork, root)
		add(LevelError, root, err.Error(), err)
		return out, firstErr()
	default:
		if err := probeWritable(settingWork, root, m); err != nil {
			add(LevelError, root, err.Error(), err)
			return out, firstErr()
		}
	}
	spaceAt := root
	if fi == nil {
		if anc, err := nearestExisting(root); err == nil {
			spaceAt = anc
		}
	}
	free, warns, err := checkSpace(settingWork, spaceAt, o.MinFree)
	if err != nil {
		add(LevelError, root, err.Error(), err)
		return out, firstErr()
	}
	for _, w := range warns {
		add(LevelWarn, root, w, nil)
	}
	if len(warns) == 0 {
		add(LevelOK, root, fmt.Sprintf("%s free", formatBytes(free)), nil)
	}
	if m.Kind == KindNFS {
		add(LevelWarn, root, "on NFS: see the README's storage guidance (EFS for caches, local task storage or EBS for checkouts)", nil)
	}
	shared := m.Kind == KindNFS
	if o.Shared != nil {
		shared = *o.Shared
	}
	if fi != nil && fi.IsDir() {
		if shared {
			dirs, locks, err := listSlots(root)
			if err != nil {
				add(LevelWarn, root, "cannot list slots: "+err.Error(), nil)
			}
			seen := map[int]bool{}
			for _, n := range append(dirs, locks...) {
				if seen[n] {
					continue
				}
				seen[n] = true
				st := inspectSlot(root, n)
				p := slotDir(root, n)
				switch {
				case st.Err != nil:
					add(LevelWarn, p, "cannot inspect the slot's lock: "+st.Err.Error(), nil)
				case st.Held:
					add(LevelInfo, p, "held by "+st.Record.describe(), nil)
				case st.Record != nil:
					add(LevelInfo, p, "free (warm); last holder ended without releasing it: "+st.Record.describe(), nil)
				default:
					add(LevelInfo, p, "free (warm)", nil)
				}
			}
			if len(seen) == 0 {
				add(LevelInfo, root, "shared: no slots yet; the first agent makes slot-0", nil)
			}
		} else {
			uid := effectiveUID(o.UID)
			var st unix.Stat_t
			if unix.Lstat(root, &st) == nil && int(st.Uid) != uid {
				msg := fmt.Sprintf("owned by uid %d, not the agent's uid %d", st.Uid, uid)
				if os.Geteuid() == 0 && o.UID >= 0 {
					msg += "; the owner of this directory (not its contents) is changed at start"
				}
				add(LevelWarn, root, msg, nil)
			}
			for _, w := range scanForeign(root, uid, o.GID) {
				add(LevelWarn, root, w, nil)
			}
		}
	}
	return out, firstErr()
}

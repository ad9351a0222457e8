//go:build linux

package workdir

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

const (
	settingWork  = "AZP_WORK"
	settingTools = "AZP_TOOLS_DIR"
	// scanLimit bounds the ownership scan: it looks at the work root's children and
	// grandchildren (the agent's checkouts are _work/<n>/s), and on EFS every entry is a round trip.
	scanLimit   = 2000
	reportLimit = 5
)

// Prepare makes the work directory ready for the agent: it detects the storage, creates what is
// missing for the run-as user, checks that the volume is writable and has space, and on a shared
// volume leases a slot. The returned Lease's Dir is the agent's work folder.
func Prepare(ctx context.Context, o Options) (*Lease, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, m, err := openRoot(settingWork, o.Root)
	if err != nil {
		return nil, err
	}
	created, err := mkdirAllOwned(settingWork, root, o.UID, o.GID)
	if err != nil {
		return nil, err
	}
	if err := requireDir(settingWork, root); err != nil {
		return nil, err
	}
	// Space before the write probe: a full volume is a runtime problem with its own advice, and
	// root may still write into reserved blocks that the agent's user cannot use.
	var warnings []string
	free, w, err := checkSpace(settingWork, root, o.MinFree)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, w...)
	if err := probeWritable(settingWork, root, m); err != nil {
		return nil, err
	}

	shared := m.Kind == KindNFS
	if o.Shared != nil {
		shared = *o.Shared
	}
	l := &Lease{Dir: root, Slot: -1, Mount: m, Shared: shared}
	if shared {
		h := o.Holder
		if h.PID == 0 {
			h.PID = os.Getpid()
		}
		if h.Host == "" {
			h.Host, _ = os.Hostname()
		}
		if h.Since.IsZero() {
			h.Since = time.Now().UTC()
		}
		lk, notes, err := leaseSlot(ctx, root, h)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, notes...)
		l.lock, l.Slot, l.Dir = lk, lk.n, slotDir(root, lk.n)
		made, err := mkdirAllOwned(settingWork, l.Dir, o.UID, o.GID)
		if err != nil {
			lk.release()
			return nil, err
		}
		created = append(created, made...)
	} else if m.Kind == KindNFS {
		warnings = append(warnings, fmt.Sprintf("%s is on NFS and AZP_WORK_SHARED=false: no slot is leased, so no other agent may use this directory", root))
	}

	w, err = fixOwnership(settingWork, l.Dir, m, o.UID, o.GID, created)
	if err != nil {
		l.Release()
		return nil, err
	}
	warnings = append(warnings, w...)
	warnings = append(warnings, scanForeign(l.Dir, effectiveUID(o.UID), o.GID)...)
	if m.Kind == KindNFS {
		warnings = append(warnings, fmt.Sprintf("work directory %s is on NFS (%s): checkouts, untar and npm install are slow there; "+
			"see the README's storage guidance: EFS for caches (AZP_AGENT_CACHE, AZP_TOOLS_DIR), local task storage or EBS for AZP_WORK", l.Dir, m.Source))
	}
	l.Warnings = warnings

	attrs := []any{"path", l.Dir, "storage", string(m.Kind), "fstype", m.FSType, "source", m.Source,
		"mountpoint", m.MountPoint, "shared", shared, "free_bytes", free}
	if shared {
		attrs = append(attrs, "slot", l.Slot)
	}
	log.Info("work directory", attrs...)
	for _, w := range warnings {
		log.Warn(w, "path", l.Dir)
	}
	return l, nil
}

// Release gives up the slot (if any). It is idempotent; the process's death releases it too.
func (l *Lease) Release() error {
	if l == nil {
		return nil
	}
	return l.lock.release()
}

// PrepareTools prepares AZP_TOOLS_DIR for the agent's user: creates it, owns what it created,
// fixes the owner of the top directory and checks that it is writable. The supervisor hands it to
// the agent as AGENT_TOOLSDIRECTORY.
func PrepareTools(dir string, uid, gid int) error {
	p, m, err := openRoot(settingTools, dir)
	if err != nil {
		return err
	}
	created, err := mkdirAllOwned(settingTools, p, uid, gid)
	if err != nil {
		return err
	}
	if err := requireDir(settingTools, p); err != nil {
		return err
	}
	if err := probeWritable(settingTools, p, m); err != nil {
		return err
	}
	_, err = fixOwnership(settingTools, p, m, uid, gid, created)
	return err
}

// openRoot is the first step of Prepare, PrepareTools and Check: the setting's absolute path with
// its symlinks resolved once under the ownership rule (resolveRoot; from then on the path names no
// symlink and what lies below it is worked on without following one), its storage, and a
// writable mount.
func openRoot(setting, p string) (string, Mount, error) {
	root, err := absSetting(setting, p)
	if err != nil {
		return "", Mount{}, err
	}
	if root, err = resolveRoot(setting, root); err != nil {
		return "", Mount{}, err
	}
	m, err := Detect(root)
	if err != nil {
		return "", Mount{}, exit.Runtime(err)
	}
	if m.ReadOnly {
		return root, m, exit.Config(readOnlyError(setting, root, m))
	}
	return root, m, nil
}

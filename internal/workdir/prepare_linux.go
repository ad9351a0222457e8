//go:build linux

package workdir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"golang.org/x/sys/unix"
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
	root, err := absSetting(settingWork, o.Root)
	if err != nil {
		return nil, err
	}
	// From here on root names no symlink: what lies below it is worked on without following one.
	if root, err = resolveRoot(settingWork, root); err != nil {
		return nil, err
	}
	m, err := Detect(root)
	if err != nil {
		return nil, exit.Runtime(err)
	}
	if m.ReadOnly {
		return nil, exit.Config(readOnlyError(settingWork, root, m))
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
	p, err := absSetting(settingTools, dir)
	if err != nil {
		return err
	}
	if p, err = resolveRoot(settingTools, p); err != nil {
		return err
	}
	m, err := Detect(p)
	if err != nil {
		return exit.Runtime(err)
	}
	if m.ReadOnly {
		return exit.Config(readOnlyError(settingTools, p, m))
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
	root, err := absSetting(settingWork, o.Root)
	if err != nil {
		add(LevelError, o.Root, err.Error(), err)
		return out, firstErr()
	}
	if root, err = resolveRoot(settingWork, root); err != nil {
		add(LevelError, o.Root, err.Error(), err)
		return out, firstErr()
	}
	m, err := Detect(root)
	if err != nil {
		err = exit.Runtime(err)
		add(LevelError, root, err.Error(), err)
		return out, firstErr()
	}
	add(LevelInfo, root, "work directory on "+m.String(), nil)
	if m.ReadOnly {
		err := exit.Config(readOnlyError(settingWork, root, m))
		add(LevelError, root, err.Error(), err)
		return out, firstErr()
	}
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

func absSetting(setting, p string) (string, error) {
	if p == "" {
		return "", exit.Config(fmt.Errorf("%s is empty: set it to an absolute directory path", setting))
	}
	if !filepath.IsAbs(p) {
		return "", exit.Config(fmt.Errorf("%s %q is not an absolute path: resolve it against the agent directory first", setting, p))
	}
	return filepath.Clean(p), nil
}

func readOnlyError(setting, p string, m Mount) error {
	return fmt.Errorf("%s %s is on a read-only mount (%s %s on %s): mount a writable volume there "+
		"(ECS mountPoints readOnly=false, compose without :ro; with readonlyRootFilesystem the path needs a volume of its own) or point %s elsewhere",
		setting, p, m.FSType, m.Source, m.MountPoint, setting)
}

// mkdirAllOwned creates p and its missing parents and gives each directory it created (and only
// those) to uid:gid. It returns the created directories. p is below a root that resolveRoot
// returned, so a symlink met on the way (the existing directory it adopts, one made meanwhile
// under a name it was about to create) was planted there: it is refused, not followed.
func mkdirAllOwned(setting, p string, uid, gid int) ([]string, error) {
	var missing []string
	for cur := p; ; cur = filepath.Dir(cur) {
		if fi, err := os.Lstat(cur); err == nil {
			if fi.Mode()&os.ModeSymlink != 0 {
				return nil, symlinkError(setting, cur)
			}
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, accessError(setting, cur, "inspect", err)
		}
		missing = append(missing, cur)
		if cur == filepath.Dir(cur) {
			break
		}
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := os.Mkdir(d, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				// Made by someone else meanwhile (another agent on the same volume), or a
				// symlink planted there.
				if fi, lerr := os.Lstat(d); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
					return created, symlinkError(setting, d)
				}
				continue
			}
			return created, accessError(setting, d, "create", err)
		}
		created = append(created, d)
		if ownedAlready := (uid < 0 || uid == os.Geteuid()) && (gid < 0 || gid == os.Getegid()); !ownedAlready {
			if err := os.Lchown(d, uid, gid); err != nil {
				return created, exit.Config(fmt.Errorf("%s: created %s but cannot give it to %d:%d: %w; "+
					"start the entrypoint as root, or create the directory for that user in the image (or the EFS access point's creation_info)",
					setting, d, uid, gid, err))
			}
		}
	}
	return created, nil
}

func requireDir(setting, p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return accessError(setting, p, "inspect", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return symlinkError(setting, p)
	}
	if !fi.IsDir() {
		return exit.Config(fmt.Errorf("%s %s exists but is not a directory: remove it or point %s at a directory", setting, p, setting))
	}
	return nil
}

// accessError classifies a filesystem error on p: a read-only or refused volume is a
// configuration problem, a full one a runtime problem.
func accessError(setting, p, what string, err error) error {
	switch {
	case errors.Is(err, unix.EROFS):
		return exit.Config(fmt.Errorf("%s: cannot %s %s: the volume is read-only (%w): mount a writable volume there or point %s elsewhere", setting, what, p, err, setting))
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return exit.Config(fmt.Errorf("%s: cannot %s %s: permission denied (%w): start the entrypoint as root, or make the directory writable for the user it runs as (image VOLUME ownership, EFS access point posix_user/creation_info)", setting, what, p, err))
	case errors.Is(err, unix.ENOTDIR):
		return exit.Config(fmt.Errorf("%s: cannot %s %s: a parent is not a directory (%w): point %s at a directory", setting, what, p, err, setting))
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return exit.Runtime(fmt.Errorf("%s: cannot %s %s: the volume is full (%w): free space or give the task more storage (ephemeralStorage, EBS sizeInGiB)", setting, what, p, err))
	}
	return exit.Runtime(fmt.Errorf("%s: cannot %s %s: %w", setting, what, p, err))
}

// probeWritable creates and removes a file in dir: the only reliable test on NFS, where access(2)
// and mode bits do not tell what the server (an EFS access point) will allow.
func probeWritable(setting, dir string, m Mount) error {
	name := filepath.Join(dir, ".azp-write-test-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		if errors.Is(err, unix.EROFS) {
			return exit.Config(readOnlyError(setting, dir, m))
		}
		return accessError(setting, dir, "write to", err)
	}
	_, werr := f.Write([]byte("x"))
	cerr := f.Close()
	os.Remove(name)
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		return accessError(setting, dir, "write to", werr)
	}
	return nil
}

// checkSpace returns the free bytes for unprivileged users, a warning below minFree, and a
// runtime error when the volume is full (no blocks or no inodes left for them).
func checkSpace(setting, dir string, minFree int64) (int64, []string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, nil, exit.Runtime(fmt.Errorf("%s: statfs %s: %w", setting, dir, err))
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if st.Blocks > 0 && st.Bavail == 0 {
		return 0, nil, exit.Runtime(fmt.Errorf("%s %s: the volume is full (0 bytes free of %s): free space or give the task more storage (ephemeralStorage, EBS sizeInGiB)",
			setting, dir, formatBytes(int64(st.Blocks)*int64(st.Bsize))))
	}
	if st.Files > 0 && st.Ffree == 0 {
		return free, nil, exit.Runtime(fmt.Errorf("%s %s: the volume has no free inodes: remove files or use a larger volume", setting, dir))
	}
	var warns []string
	if st.Blocks > 0 && minFree > 0 && free < minFree {
		warns = append(warns, fmt.Sprintf("%s %s has %s free, less than AZP_WORK_MIN_FREE %s: jobs may fail with a full disk; free space or give the task more storage",
			setting, dir, formatBytes(free), formatBytes(minFree)))
	}
	return free, warns, nil
}

func effectiveUID(uid int) int {
	if uid >= 0 {
		return uid
	}
	return os.Geteuid()
}

// fixOwnership gives the top directory p to uid:gid when it belongs to someone else. It never
// recurses: below the top, only the directories we created were chowned (by mkdirAllOwned). When
// the owner cannot be changed (EFS access point, root squash, not root) it is an error only if the
// user cannot write there, as far as the mode bits tell on a local filesystem.
//
// p is inspected and chowned through one descriptor opened without following a symlink (at p, and
// where the kernel can refuse them, anywhere in p), so that a symlink put there between a check
// and the chown cannot redirect it.
func fixOwnership(setting, p string, m Mount, uid, gid int, created []string) ([]string, error) {
	if uid < 0 {
		return nil, nil
	}
	fd, err := openDirNoFollow(p)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, symlinkError(setting, p)
		}
		if errors.Is(err, unix.ENOTDIR) {
			return nil, requireDir(setting, p)
		}
		return nil, accessError(setting, p, "inspect", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, accessError(setting, p, "inspect", err)
	}
	wantGID := gid
	if wantGID < 0 {
		wantGID = int(st.Gid)
	}
	if int(st.Uid) == uid && int(st.Gid) == wantGID {
		return nil, nil
	}
	// O_PATH descriptor: fchownat(fd, "", AT_EMPTY_PATH) is fchown for it.
	var cerr error
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		cerr = &os.PathError{Op: "chown", Path: p, Err: err}
	}
	if cerr == nil {
		return nil, nil
	}
	fix := fmt.Sprintf("chown %d:%d %s (the directory itself), set the EFS access point's posix_user/creation_info to %d:%d, or set AZP_RUN_AS to the owner %d:%d",
		uid, wantGID, p, uid, wantGID, st.Uid, st.Gid)
	if m.Kind == KindNFS || uid == 0 || canWrite(st, uid, wantGID) {
		return []string{fmt.Sprintf("%s %s is owned by %d:%d, not the agent's user %d:%d, and its owner cannot be changed (%v); git may refuse repositories there (\"detected dubious ownership\"): %s",
			setting, p, st.Uid, st.Gid, uid, wantGID, cerr, fix)}, nil
	}
	return nil, exit.Config(fmt.Errorf("%s %s is owned by %d:%d (mode %04o), the agent's user %d:%d cannot write to it, and its owner cannot be changed: %v; fix: %s",
		setting, p, st.Uid, st.Gid, st.Mode&0o7777, uid, wantGID, cerr, fix))
}

// canWrite tells from the mode bits whether uid:gid may create entries in the directory.
func canWrite(st unix.Stat_t, uid, gid int) bool {
	mode := st.Mode
	switch {
	case int(st.Uid) == uid:
		return mode&0o300 == 0o300
	case int(st.Gid) == gid:
		return mode&0o030 == 0o030
	}
	return mode&0o003 == 0o003
}

// scanForeign looks at the directories one and two levels below dir (the agent's checkouts are
// <n>/s) and reports those owned by someone other than uid: git refuses to work in a repository
// owned by another user, and we do not chown trees recursively.
func scanForeign(dir string, uid, gid int) []string {
	var foreign []string
	count := 0
	var walk func(d string, depth int)
	walk = func(d string, depth int) {
		ents, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range ents {
			if count >= scanLimit {
				return
			}
			count++
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(d, e.Name())
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil {
				continue
			}
			if int(st.Uid) != uid {
				foreign = append(foreign, fmt.Sprintf("%s (uid %d)", p, st.Uid))
				continue // its contents are reported with it
			}
			if depth < 2 {
				walk(p, depth+1)
			}
		}
	}
	walk(dir, 1)
	if len(foreign) == 0 {
		return nil
	}
	g := strconv.Itoa(gid)
	if gid < 0 {
		g = ""
	}
	more := ""
	shown := foreign
	if len(shown) > reportLimit {
		more = fmt.Sprintf(" and %d more", len(shown)-reportLimit)
		shown = shown[:reportLimit]
	}
	return []string{fmt.Sprintf("directories under %s are owned by another user than the agent's uid %d: %v%s; git refuses repositories owned by someone else "+
		"(\"detected dubious ownership\"); fix: chown -R %d:%s each of them, or delete them so the agent checks out afresh",
		dir, uid, shown, more, uid, g)}
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for v := n / unit; v >= unit; v /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// openDirNoFollow opens directory p as an O_PATH descriptor (enough to fstat and chown it, and it
// needs no read permission) without following a symlink: with openat2 RESOLVE_NO_SYMLINKS none in
// the whole path, else (kernels before 5.6, seccomp profiles without openat2) none at the last
// component. A symlink gives ELOOP.
func openDirNoFollow(p string) (int, error) {
	flags := uint64(unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC)
	fd, err := unix.Openat2(unix.AT_FDCWD, p, &unix.OpenHow{Flags: flags, Resolve: unix.RESOLVE_NO_SYMLINKS})
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(p, int(flags), 0)
	}
	if err != nil {
		return -1, err
	}
	return fd, nil
}

// maxLinks bounds the symlinks followed while resolving a configured path, as the kernel does.
const maxLinks = 40

// resolveRoot resolves the symlinks in an operator's AZP_WORK or AZP_TOOLS_DIR once, at the start,
// so that what follows works on a path without any (a volume mounted elsewhere and linked to
// /azp/work keeps working). The part that does not exist yet is kept as written; it is created as
// directories. Running as root, only symlinks owned by root are followed: a job, running as the
// agent's user, can plant one where the work root was (mv _work _work.old; ln -s /etc _work) on a
// volume that outlives the container, and root would then chown its target at the next start.
func resolveRoot(setting, p string) (string, error) {
	euid := os.Geteuid()
	resolved := "/"
	rest := strings.Split(strings.TrimPrefix(filepath.Clean(p), "/"), "/")
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == "" || c == "." {
			continue
		}
		next := filepath.Join(resolved, c) // resolved holds no symlink, so ".." is lexical
		var st unix.Stat_t
		err := unix.Lstat(next, &st)
		if errors.Is(err, unix.ENOENT) {
			return filepath.Join(append([]string{next}, rest...)...), nil
		}
		if err != nil {
			return "", accessError(setting, next, "inspect", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			resolved = next
			continue
		}
		if int(st.Uid) != 0 && int(st.Uid) != euid {
			return "", exit.Config(fmt.Errorf("%s %s: %s is a symbolic link owned by uid %d, which a job running as that user could have put there; "+
				"the entrypoint follows only symlinks owned by root (or by the user it runs as): replace it with a directory, "+
				"or, if you made it on purpose, give it to root (chown -h 0:0 %s)", setting, p, next, st.Uid, next))
		}
		if links++; links > maxLinks {
			return "", exit.Config(fmt.Errorf("%s %s: too many levels of symbolic links", setting, p))
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", accessError(setting, next, "inspect", err)
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return resolved, nil
}

// symlinkError refuses a symlink found below a resolved work root, tools directory or slot: a job
// may have planted it, and root does not chown (or hand to the agent) what it points to.
func symlinkError(setting, p string) error {
	target, _ := os.Readlink(p)
	return exit.Config(fmt.Errorf("%s: %s is a symbolic link (to %q), not a directory; the entrypoint does not follow a symlink inside the work directory, "+
		"where a job could have planted it: remove the link (the next start creates the directory), or point %s at the real directory",
		setting, p, target, setting))
}

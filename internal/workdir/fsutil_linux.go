//go:build linux

package workdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"golang.org/x/sys/unix"
)

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

//go:build linux

package workdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// mountInfoPath is a variable so that tests can point it at recorded mountinfo.
var mountInfoPath = "/proc/self/mountinfo"

// statfs magic numbers (statfs(2)); used when mountinfo is unavailable and to trust the kernel
// over path matching for NFS, where the locking rules depend on it.
const (
	magicNFS     = 0x6969
	magicTmpfs   = 0x01021994
	magicRamfs   = 0x858458f6
	magicOverlay = 0x794c7630
	magicExt     = 0xEF53
	magicXFS     = 0x58465342
	magicBtrfs   = 0x9123683E
)

// Detect reports the mount that path sits on, using its nearest existing ancestor (so that a
// work directory that is still to be created is judged by where it will be created).
func Detect(path string) (Mount, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return Mount{}, fmt.Errorf("detect storage of %s: %w", path, err)
	}
	existing, err := nearestExisting(p)
	if err != nil {
		return Mount{}, err
	}
	resolved, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return Mount{}, fmt.Errorf("detect storage of %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(resolved, &st); err != nil {
		return Mount{}, fmt.Errorf("detect storage of %s: statfs %s: %w", path, resolved, err)
	}
	m, ok := Mount{}, false
	if f, err := os.Open(mountInfoPath); err == nil {
		entries, perr := ParseMountInfo(f)
		f.Close()
		if perr == nil {
			m, ok = DetectIn(entries, resolved)
		}
	}
	if !ok {
		// No /proc (or an unparsable one): the filesystem type alone still tells NFS and tmpfs
		// apart from local disks.
		m = Mount{Kind: kindFromMagic(int64(st.Type)), FSType: fsNameFromMagic(int64(st.Type)), MountPoint: "unknown", Root: "/"}
	}
	if int64(st.Type) == magicNFS {
		m.Kind = KindNFS
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		m.ReadOnly = true
	}
	return m, nil
}

// nearestExisting walks up from the absolute path p to the first component that exists.
func nearestExisting(p string) (string, error) {
	for cur := filepath.Clean(p); ; cur = filepath.Dir(cur) {
		_, err := os.Stat(cur)
		if err == nil {
			return cur, nil
		}
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			return "", fmt.Errorf("detect storage of %s: %w", p, err)
		}
		if cur == "/" || cur == filepath.Dir(cur) {
			return "", fmt.Errorf("detect storage of %s: no existing ancestor", p)
		}
	}
}

func kindFromMagic(t int64) Kind {
	switch t {
	case magicNFS:
		return KindNFS
	case magicTmpfs, magicRamfs:
		return KindTmpfs
	case magicOverlay:
		return KindOverlay
	case magicExt, magicXFS, magicBtrfs:
		return KindBlock
	}
	return KindOther
}

func fsNameFromMagic(t int64) string {
	switch t {
	case magicNFS:
		return "nfs"
	case magicTmpfs:
		return "tmpfs"
	case magicRamfs:
		return "ramfs"
	case magicOverlay:
		return "overlay"
	case magicExt:
		return "ext4"
	case magicXFS:
		return "xfs"
	case magicBtrfs:
		return "btrfs"
	}
	return fmt.Sprintf("0x%x", t)
}

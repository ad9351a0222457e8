package workdir

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
)

// Kind is the kind of storage a path sits on, in the terms the README uses for its storage advice.
type Kind string

const (
	KindOverlay Kind = "overlay" // the container's own writable layer (image root)
	KindBind    Kind = "bind"    // a directory of another filesystem mounted here: task storage, host or compose bind
	KindBlock   Kind = "block"   // a whole block-device filesystem (ext4, xfs, ...): EBS or a local disk
	KindNFS     Kind = "nfs"     // a network file system: EFS
	KindTmpfs   Kind = "tmpfs"   // memory
	KindOther   Kind = "other"
)

// Mount describes the mount a path sits on.
type Mount struct {
	Kind       Kind
	FSType     string // as in mountinfo, e.g. "nfs4", "xfs", "overlay"
	Source     string // mount source, e.g. "/dev/nvme1n1" or "fs-0123.efs.eu-west-1.amazonaws.com:/"
	MountPoint string // where it is mounted, as this process sees it
	Root       string // the directory of the filesystem that is mounted there ("/" unless a bind mount)
	ReadOnly   bool
}

// String is the one-line description used in logs and errors.
func (m Mount) String() string {
	ro := ""
	if m.ReadOnly {
		ro = ", read-only"
	}
	return fmt.Sprintf("%s (%s %s on %s%s)", m.Kind, m.FSType, m.Source, m.MountPoint, ro)
}

// MountInfoEntry is one line of /proc/<pid>/mountinfo (proc(5)).
type MountInfoEntry struct {
	ID, ParentID int
	Major, Minor int
	Root         string // path of the directory in the filesystem that forms the root of this mount
	MountPoint   string // relative to the process's root
	MountOptions []string
	Optional     []string // shared:N, master:N, ...
	FSType       string   // may be "type.subtype"
	Source       string
	SuperOptions []string
}

// ParseMountInfo parses the format of /proc/self/mountinfo. Octal escapes (\040 for a space) in
// paths are decoded. A malformed line is an error that quotes it, rather than a silently wrong mount.
func ParseMountInfo(r io.Reader) ([]MountInfoEntry, error) {
	var out []MountInfoEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		e, err := parseMountInfoLine(line)
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d %q: %w", n, line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

func parseMountInfoLine(line string) (MountInfoEntry, error) {
	var e MountInfoEntry
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 7 || sep < 0 || len(f) < sep+3 {
		return e, fmt.Errorf("expected at least 10 fields with a \"-\" separator")
	}
	var err error
	if e.ID, err = strconv.Atoi(f[0]); err != nil {
		return e, fmt.Errorf("mount id: %w", err)
	}
	if e.ParentID, err = strconv.Atoi(f[1]); err != nil {
		return e, fmt.Errorf("parent id: %w", err)
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if !ok {
		return e, fmt.Errorf("major:minor %q", f[2])
	}
	if e.Major, err = strconv.Atoi(maj); err != nil {
		return e, fmt.Errorf("major: %w", err)
	}
	if e.Minor, err = strconv.Atoi(min); err != nil {
		return e, fmt.Errorf("minor: %w", err)
	}
	e.Root = unescapeOctal(f[3])
	e.MountPoint = unescapeOctal(f[4])
	e.MountOptions = strings.Split(f[5], ",")
	e.Optional = append([]string(nil), f[6:sep]...)
	e.FSType = f[sep+1]
	e.Source = unescapeOctal(f[sep+2])
	if len(f) > sep+3 {
		e.SuperOptions = strings.Split(f[sep+3], ",")
	}
	return e, nil
}

// unescapeOctal decodes the kernel's \ooo escapes (space, tab, newline and backslash).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hasOption(opts []string, want string) bool {
	for _, o := range opts {
		if o == want {
			return true
		}
	}
	return false
}

// classify maps a mountinfo entry to a Kind. Order matters: the filesystem type decides for
// network, memory and overlay filesystems whatever their root; for disk filesystems a root other
// than "/" means a directory of some other filesystem was bind-mounted here (Fargate task storage,
// a compose bind mount), which is local scratch rather than a volume of its own.
func classify(e MountInfoEntry) Kind {
	base, _, _ := strings.Cut(e.FSType, ".") // "fuse.sshfs" -> "fuse"
	switch {
	case e.FSType == "nfs" || e.FSType == "nfs4" || e.FSType == "efs" || base == "nfs":
		return KindNFS
	case e.FSType == "fuse.sshfs" || e.FSType == "cifs" || e.FSType == "smb3" || e.FSType == "ceph" ||
		e.FSType == "glusterfs" || e.FSType == "fuse.glusterfs" || e.FSType == "9p":
		return KindNFS // network filesystems: the same advice and locking concerns as NFS
	case e.FSType == "tmpfs" || e.FSType == "ramfs":
		return KindTmpfs
	case e.FSType == "overlay" || e.FSType == "aufs" || e.FSType == "fuse.fuse-overlayfs":
		return KindOverlay
	}
	if e.Root != "/" {
		return KindBind
	}
	switch e.FSType {
	case "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "vfat", "exfat":
		return KindBlock
	}
	return KindOther
}

// mountFor picks the entry whose mount point is the longest prefix of the clean absolute path p.
// When several mounts share a mount point the last one listed is on top and wins.
func mountFor(entries []MountInfoEntry, p string) (MountInfoEntry, bool) {
	p = path.Clean(p)
	best := -1
	bestLen := -1
	for i, e := range entries {
		mp := path.Clean(e.MountPoint)
		if !isUnder(p, mp) {
			continue
		}
		if len(mp) >= bestLen {
			best, bestLen = i, len(mp)
		}
	}
	if best < 0 {
		return MountInfoEntry{}, false
	}
	return entries[best], true
}

func isUnder(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// mountFromEntry builds the Mount for an entry; statfs may later add read-only.
func mountFromEntry(e MountInfoEntry) Mount {
	return Mount{
		Kind:       classify(e),
		FSType:     e.FSType,
		Source:     e.Source,
		MountPoint: e.MountPoint,
		Root:       e.Root,
		ReadOnly:   hasOption(e.MountOptions, "ro") || hasOption(e.SuperOptions, "ro"),
	}
}

// DetectIn resolves the mount of the clean absolute path p from parsed mountinfo, without touching
// the filesystem. Detect uses it; tests use it with recorded mountinfo.
func DetectIn(entries []MountInfoEntry, p string) (Mount, bool) {
	e, ok := mountFor(entries, p)
	if !ok {
		return Mount{}, false
	}
	return mountFromEntry(e), true
}

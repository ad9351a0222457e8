//go:build linux

package register

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Owner says who owns the files written into the agent root.
type Owner struct {
	// UID and GID are set with fchown when UID >= 0 (the entrypoint runs as root): root and the
	// agent's group, so the listener can read the files and no job can rewrite them.
	UID, GID int
	Mode     os.FileMode
}

// RootOwned is the root-mode ownership: root:gid, 0440.
func RootOwned(gid int) Owner { return Owner{UID: 0, GID: gid, Mode: 0o440} }

// Private is the non-root ownership: the entrypoint's own uid, 0600 (RSAFileKeyManager.CreateKey
// runs chmod 600 on the key file; the same is used for every file here).
func Private() Owner { return Owner{UID: -1, GID: -1, Mode: 0o600} }

// Dir is an agent root opened once, without following a symlink in any component of its path
// (openat2 RESOLVE_NO_SYMLINKS). Every file is then created beneath that descriptor, so a path a
// job changes after the check cannot redirect a write.
type Dir struct {
	fd   int
	path string
}

// OpenDir opens an agent root for writing its files.
func OpenDir(path string) (*Dir, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("agent directory %s: a component of the path is a symbolic link; the entrypoint writes the agent's registration only into a directory reached without links (set AZP_AGENT_DIR to the real path)", path)
		}
		return nil, fmt.Errorf("agent directory %s: %w", path, err)
	}
	return &Dir{fd: fd, path: path}, nil
}

// Close releases the directory.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Path is the directory's path, for messages.
func (d *Dir) Path() string { return d.path }

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("%q is not a file name", name)
	}
	return nil
}

// WriteFile writes name atomically beneath the directory: a new temporary file (O_EXCL|O_NOFOLLOW,
// never an existing inode, so never a planted hard link), owner and mode set on the descriptor,
// synced, then renamed over name. A symlink or hard link at name is replaced, never followed.
func (d *Dir) WriteFile(name string, data []byte, o Owner) error {
	if err := checkName(name); err != nil {
		return err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := "." + strings.TrimPrefix(name, ".") + ".tmp-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat2(d.fd, tmp, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    0o600,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", d.path, name, err)
	}
	f := os.NewFile(uintptr(fd), d.path+"/"+tmp)
	fail := func(err error) error {
		f.Close()
		_ = unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("write %s/%s: %w", d.path, name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if o.UID >= 0 {
		if err := unix.Fchown(fd, o.UID, o.GID); err != nil {
			return fail(err)
		}
	}
	if err := unix.Fchmod(fd, uint32(o.Mode.Perm())); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		_ = unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("write %s/%s: %w", d.path, name, err)
	}
	if err := unix.Renameat(d.fd, tmp, d.fd, name); err != nil {
		_ = unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("write %s/%s: %w", d.path, name, err)
	}
	return nil
}

// Remove unlinks name beneath the directory (a link is removed, not followed); a missing file is
// not an error.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := unix.Unlinkat(d.fd, name, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s/%s: %w", d.path, name, err)
	}
	return nil
}

// Sync flushes the directory's entries (the renames) to disk.
func (d *Dir) Sync() error { return unix.Fsync(d.fd) }

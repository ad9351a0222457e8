//go:build linux

package agentpkg

import (
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown, mount)")
	}
}

// tmpfs mounts a small tmpfs in a fresh directory and unmounts it when the test ends.
func tmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount tmpfs (%v): needs CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestOwnershipGivenWhileExtracting(t *testing.T) {
	needRoot(t)
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	dir := filepath.Join(t.TempDir(), "agent")
	o, _ := testOptions(t, dir)
	o.Version, o.UID, o.GID = "4.261.0", 1234, 1235
	if _, err := Install(context.Background(), o, url, sha(pkg)); err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		fi, _ := os.Lstat(p)
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 1234 || st.Gid != 1235 {
			t.Errorf("%s owned by %d:%d, want 1234:1235", p, st.Uid, st.Gid)
		}
		n++
		return nil
	})
	if n < 20 {
		t.Errorf("only %d entries checked", n)
	}
	// setuid/setgid bits are never carried over, and chown did not eat the exec bits.
	fi, _ := os.Stat(filepath.Join(dir, "bin/Agent.Listener"))
	if fi.Mode() != 0o755 {
		t.Errorf("mode %v", fi.Mode())
	}
}

func TestReadOnlyTarget(t *testing.T) {
	needRoot(t)
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	mnt := tmpfs(t, "size=8m")
	dir := filepath.Join(mnt, "agent")
	os.Mkdir(dir, 0o755)
	if err := syscall.Mount("", mnt, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("cannot remount read-only: %v", err)
	}
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	_, err := Install(context.Background(), o, url, sha(pkg))
	assertCode(t, err, 1, dir, "read-only")
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("not EROFS: %v", err)
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("%d downloads into a read-only directory; it should fail before", n)
	}
	assertNoPackage(t, dir)

	// A package baked into a read-only directory is still usable.
	if err := syscall.Mount("", mnt, "", syscall.MS_REMOUNT, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(context.Background(), o, url, sha(pkg)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("", mnt, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	s.set(func(s *server) { s.noHit = true })
	o.Version = ""
	if _, err := Ensure(context.Background(), o, failLister{t}); err != nil {
		t.Fatal(err)
	}
}

func TestFullDisk(t *testing.T) {
	needRoot(t)
	big := make([]byte, 3<<20) // incompressible: the tmpfs fills while extracting
	rand.Read(big)
	entries := append(agentEntries("4.261.0"), file("./externals/node/bin/node", string(big), 0o755))
	pkg := buildTarGz(t, entries)
	s := newServer(t)
	url := s.add("p.tar.gz", pkg)
	dir := tmpfs(t, "size=2m")
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	_, err := Install(context.Background(), o, url, sha(pkg))
	assertCode(t, err, 1, "4.261.0", dir)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("not ENOSPC: %v", err)
	}
	assertNoPackage(t, dir)

	// The same with the cache on the full file system: the cache copy fails too, cleanly.
	cache := filepath.Join(dir, "cache")
	o.CacheDir = cache
	_, err = Install(context.Background(), o, url, sha(pkg))
	assertCode(t, err, 1, "4.261.0")
	assertNoTemp(t, dir)
	if _, ok := Installed(dir); ok {
		t.Error("installed on a full disk")
	}
	if _, err := os.Stat(filepath.Join(cache, "vsts-agent-linux-x64-4.261.0.tar.gz")); err == nil {
		t.Error("partial cache entry published")
	}
}

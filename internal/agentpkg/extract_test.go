package agentpkg

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestUnsafePackagesAreRejected(t *testing.T) {
	ok := file("./bin/Agent.Listener", "x", 0o755)
	tests := []struct {
		name    string
		entries []entry
	}{
		{"dot-dot entry", []entry{ok, file("../evil", "x", 0o644)}},
		{"dot-dot inside a path", []entry{ok, file("./bin/../../evil", "x", 0o644)}},
		{"absolute path", []entry{ok, file("/tmp/evil", "x", 0o644)}},
		{"absolute symlink", []entry{ok, symlink("./bin/sh", "/bin/sh")}},
		{"symlink escaping", []entry{ok, symlink("./bin/up", "../../..")}},
		{"symlink chain escaping", []entry{ok, dir("./d/"), symlink("./d/s", ".."), symlink("./d/x", "s/..")}},
		{"symlink chain escaping, defined first", []entry{ok, dir("./d/"), symlink("./d/x", "s/.."), symlink("./d/s", "..")}},
		{"symlink loop", []entry{ok, symlink("./a", "b"), symlink("./b", "a")}},
		{"write through a symlink", []entry{ok, symlink("./lnk", "bin"), file("./lnk/evil", "x", 0o644)}},
		{"hard link escaping", []entry{ok, hardlink("./bin/h", "../../etc/passwd")}},
		{"hard link absolute", []entry{ok, hardlink("./bin/h", "/etc/passwd")}},
		{"hard link to a symlink", []entry{ok, symlink("./s", "bin/Agent.Listener"), hardlink("./h", "./s")}},
		{"hard link to a missing file", []entry{ok, hardlink("./h", "./nothere")}},
		{"device", []entry{ok, {name: "./dev", typ: tar.TypeChar, mode: 0o644}}},
		{"fifo", []entry{ok, {name: "./fifo", typ: tar.TypeFifo, mode: 0o644}}},
		{"duplicate file", []entry{ok, file("./bin/Agent.Listener", "y", 0o755)}},
		{"file then directory", []entry{ok, dir("./bin/Agent.Listener/")}},
		{"reserved marker name", []entry{ok, file("./"+MarkerFile, "{}", 0o644)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t)
			url := s.add("bad.tar.gz", buildTarGz(t, tt.entries))
			outside := t.TempDir()
			dir := filepath.Join(outside, "agent")
			o, _ := testOptions(t, dir)
			o.Version = "4.261.0"
			_, err := Install(context.Background(), o, url, "")
			assertCode(t, err, 1, "4.261.0", url)
			if !errors.Is(err, ErrUnsafePackage) {
				t.Errorf("not ErrUnsafePackage: %v", err)
			}
			assertNoPackage(t, dir)
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("something was written next to the agent directory: %v", ents)
			}
		})
	}
}

func TestSafeSymlinksAreKept(t *testing.T) {
	// Inside the root, through other symlinks, dangling: all fine.
	entries := []entry{
		dir("./a/"), dir("./a/b/"), file("./a/b/f", "f", 0o644),
		symlink("./top", "a/b"),
		symlink("./a/up", ".."),
		symlink("./a/b/viaTop", "../../top/f"),
		symlink("./dangling", "nothere"),
		symlink("./a/b/self", "."),
	}
	root := t.TempDir()
	s := newServer(t)
	url := s.add("ok.tar.gz", buildTarGz(t, entries))
	o, _ := testOptions(t, root)
	o.Version = "1.0.0"
	if _, err := Install(context.Background(), o, url, ""); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "a/b/viaTop")); err != nil || string(b) != "f" {
		t.Errorf("%q %v", b, err)
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"./": "", ".": "", "./bin/x": "bin/x", "bin//x/": "bin/x", "a/./b": "a/b"} {
		if got, err := cleanName(in); err != nil || got != want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/x", "..", "a/..", "../a", "a/../b"} {
		if _, err := cleanName(in); err == nil {
			t.Errorf("cleanName(%q) accepted", in)
		}
	}
}

func TestNotGzipIsRejected(t *testing.T) {
	s := newServer(t)
	url := s.add("x.tar.gz", []byte("<html>not a package</html>"))
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	_, err := Install(context.Background(), o, url, "")
	assertCode(t, err, 1, "4.261.0", url)
	assertNoPackage(t, dir)
}

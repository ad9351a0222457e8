//go:build linux

package workdir

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestUnusableSlotsAreSkipped plants, as a job would on a shared volume, a FIFO at slot-0.lock,
// a hard link at slot-1.lock (to a file root must not write), a lock file owned by another user at
// slot-2.lock and a file at slot-3: each slot counts as taken with a warning naming it, the lease
// moves on to slot 4, nothing planted is written, and check does not hang on the FIFO.
func TestUnusableSlotsAreSkipped(t *testing.T) {
	root := t.TempDir()
	if err := syscall.Mkfifo(lockPath(root, 0), 0o666); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, lockPath(root, 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lockPath(root, 2), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	foreign := os.Geteuid() == 0
	if foreign {
		if err := os.Chown(lockPath(root, 2), testUID, testUID); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(slotDir(root, 3), []byte("not a dir"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Prepare(context.Background(), Options{Root: root, Shared: boolp(true), UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	want := 4
	if !foreign {
		want = 2 // not root: the test cannot give slot-2.lock to another user; it is used
	}
	if l.Slot != want {
		t.Fatalf("leased slot %d, want %d; warnings %q", l.Slot, want, l.Warnings)
	}
	if !warned(l.Warnings, lockPath(root, 0), "not a regular file") || !warned(l.Warnings, lockPath(root, 1), "hard links") {
		t.Errorf("warnings %q do not name the FIFO and the hard link", l.Warnings)
	}
	if foreign && (!warned(l.Warnings, lockPath(root, 2), "owned by uid") || !warned(l.Warnings, slotDir(root, 3), "not a directory")) {
		t.Errorf("warnings %q do not name the foreign lock and the file at slot-3", l.Warnings)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("root wrote through the hard-linked lock file: %q", b)
	}
	f, err := Check(Options{Root: root, Shared: boolp(true), UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if !findingMentions(f, LevelWarn, "not a regular file") {
		t.Errorf("check does not report the FIFO: %+v", f)
	}
}

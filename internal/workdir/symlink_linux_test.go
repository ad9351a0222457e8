//go:build linux

package workdir

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// plant makes link -> target as the agent's user would (a symlink owned by testUID), with target
// an existing root-owned directory.
func plant(t *testing.T, link string) (target string) {
	t.Helper()
	target = filepath.Join(t.TempDir(), "victim")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, testUID, testUID); err != nil {
		t.Fatal(err)
	}
	return target
}

func assertUntouched(t *testing.T, target string) {
	t.Helper()
	if u, g := owner(t, target); u != 0 || g != 0 {
		t.Errorf("the symlink was followed: its target %s is now owned by %d:%d", target, u, g)
	}
}

// A symlink a job planted is never followed by root: not at a slot, not where the work root (a
// child of the agent directory) was, not at the tools directory, not in fixOwnership itself.
func TestPlantedSymlinksAreNotFollowed(t *testing.T) {
	requireRoot(t)
	t.Run("slot", func(t *testing.T) {
		root := t.TempDir()
		link := slotDir(root, 0)
		target := plant(t, link)
		// The slot counts as taken, with a warning naming it, and the lease moves on: a job
		// cannot stop every agent on the volume with one link.
		l, err := Prepare(context.Background(), Options{Root: root, Shared: boolp(true), UID: testUID, GID: testUID})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		if l.Slot != 1 || !warned(l.Warnings, link, "symbolic link") {
			t.Errorf("slot %d, warnings %q; want slot 1 and a warning naming %s", l.Slot, l.Warnings, link)
		}
		assertUntouched(t, target)
	})
	t.Run("work root replaced by a link", func(t *testing.T) {
		// mv _work _work.old; ln -s /some/dir _work, by a job, on a volume that outlives the task.
		link := filepath.Join(t.TempDir(), "agent", "_work")
		target := plant(t, link)
		for _, shared := range []bool{false, true} {
			_, err := Prepare(context.Background(), Options{Root: link, Shared: boolp(shared), UID: testUID, GID: testUID})
			wantCode(t, err, exit.Usage, link, "symbolic link", "uid 4321")
			assertUntouched(t, target)
		}
		_, err := Check(Options{Root: link, UID: testUID, GID: testUID})
		wantCode(t, err, exit.Usage, link)
	})
	t.Run("link in a parent of the work root", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "agent")
		target := plant(t, link)
		_, err := Prepare(context.Background(), Options{Root: filepath.Join(link, "_work"), UID: testUID, GID: testUID})
		wantCode(t, err, exit.Usage, link, "symbolic link")
		assertUntouched(t, target)
		if _, err := os.Lstat(filepath.Join(target, "_work")); err == nil {
			t.Error("the work directory was created through the link")
		}
	})
	t.Run("child of the work root", func(t *testing.T) {
		root := t.TempDir()
		target := plant(t, filepath.Join(root, "1"))
		if _, err := Prepare(context.Background(), Options{Root: root, UID: testUID, GID: testUID}); err != nil {
			t.Fatal(err)
		}
		assertUntouched(t, target)
	})
	t.Run("tools", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "tools")
		target := plant(t, link)
		wantCode(t, PrepareTools(link, testUID, testUID), exit.Usage, link, "symbolic link")
		assertUntouched(t, target)
	})
	t.Run("fixOwnership", func(t *testing.T) {
		// Even a root-owned link put there after the path was resolved is not chowned through.
		link := filepath.Join(t.TempDir(), "work")
		target := plant(t, link)
		os.Lchown(link, 0, 0)
		_, err := fixOwnership(settingWork, link, Mount{}, testUID, testUID, nil)
		wantCode(t, err, exit.Usage, link, "symbolic link")
		assertUntouched(t, target)
		_, err = mkdirAllOwned(settingWork, filepath.Join(link, "x"), testUID, testUID)
		wantCode(t, err, exit.Usage, link, "symbolic link")
		if _, err := os.Lstat(filepath.Join(target, "x")); err == nil {
			t.Error("mkdirAllOwned created a directory through the link")
		}
	})
}

// A work root or tools directory that the operator made a symlink (root's, e.g. in the image) to
// a volume is resolved once and works; the agent gets the resolved path.
func TestOperatorSymlinkedRoot(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	vol := filepath.Join(base, "volume")
	os.Mkdir(vol, 0o755)
	os.Mkdir(filepath.Join(base, "azp"), 0o755)
	work := filepath.Join(base, "azp", "work")
	if err := os.Symlink("../volume", work); err != nil { // relative, root-owned
		t.Fatal(err)
	}
	l, err := Prepare(context.Background(), Options{Root: work, UID: testUID, GID: testUID})
	if err != nil {
		t.Fatal(err)
	}
	if l.Dir != vol {
		t.Errorf("Lease.Dir %s, want the resolved %s", l.Dir, vol)
	}
	if u, _ := owner(t, vol); u != testUID {
		t.Errorf("the volume's top directory was not given to the agent: uid %d", u)
	}
	l, err = Prepare(context.Background(), Options{Root: work, Shared: boolp(true), UID: testUID, GID: testUID})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if l.Dir != slotDir(vol, 0) {
		t.Errorf("Lease.Dir %s, want %s", l.Dir, slotDir(vol, 0))
	}
	if u, _ := owner(t, l.Dir); u != testUID {
		t.Errorf("slot not created for the agent: uid %d", u)
	}
	// A link to a directory that does not exist yet: the rest is created under the target.
	later := filepath.Join(base, "later")
	os.Symlink(filepath.Join(base, "volume2", "w"), later)
	if l, err = Prepare(context.Background(), Options{Root: filepath.Join(later, "x"), UID: testUID, GID: testUID}); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(base, "volume2", "w", "x"); l.Dir != want {
		t.Errorf("Lease.Dir %s, want %s", l.Dir, want)
	}
	tools := filepath.Join(base, "tools")
	os.Symlink(vol, tools)
	if err := PrepareTools(tools, testUID, testUID); err != nil {
		t.Fatal(err)
	}
	f, err := Check(Options{Root: work, UID: testUID, GID: testUID})
	if err != nil {
		t.Fatalf("check: %v %+v", err, f)
	}
	for _, fd := range f {
		if strings.Contains(fd.Message, "symbolic link") {
			t.Errorf("check: %+v", fd)
		}
	}
}

func warned(ws []string, words ...string) bool {
	for _, w := range ws {
		ok := true
		for _, word := range words {
			ok = ok && strings.Contains(w, word)
		}
		if ok {
			return true
		}
	}
	return false
}

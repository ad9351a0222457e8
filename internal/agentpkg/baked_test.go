package agentpkg_test

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

// noLister fails the test when asked: a baked package must be used without the server.
type noLister struct{ t *testing.T }

func (l noLister) Packages(context.Context, string, int) ([]agentpkg.Package, error) {
	l.t.Error("the server was asked for packages although a complete agent is baked into AZP_AGENT_DIR")
	return nil, errors.New("no listing")
}

// bake extracts a simulator package the way custom images do: `tar -xz` by root into the agent
// directory, no marker, then made read-only for everyone but root (0555 dirs, 0444/0555 files).
func bake(t *testing.T, version, platform string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "azp-sim")
	os.WriteFile(bin, []byte("#!/bin/sh\necho fake\n"), 0o755)
	res, err := pkgbuild.Build(pkgbuild.Options{Version: version, Platform: platform, AgentBinary: bin, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "agent")
	os.Mkdir(dir, 0o755)
	if out, err := exec.Command("tar", "-xzf", res.Path, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v\n%s", err, out)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			fi, _ := d.Info()
			os.Lchown(p, 0, 0)
			os.Chmod(p, fi.Mode().Perm()&^0o222)
		}
		return nil
	})
	t.Cleanup(func() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return dir
}

// snapshot lists every path with its mode and modification time.
func snapshot(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := d.Info()
		b.WriteString(p + " " + fi.Mode().String() + " " + fi.ModTime().Format(time.RFC3339Nano) + "\n")
		return nil
	})
	return b.String()
}

func TestEnsureUsesBakedTree(t *testing.T) {
	dir := bake(t, "4.261.0", "linux-musl-x64")
	before := snapshot(t, dir)
	for _, pin := range []string{"", "4.261.0"} {
		o := agentpkg.Options{Dir: dir, Version: pin, Platform: "linux-musl-x64", UID: -1, GID: -1, Logger: slog.New(slog.DiscardHandler)}
		m, err := agentpkg.Ensure(context.Background(), o, noLister{t})
		if err != nil {
			t.Fatalf("pin %q: %v", pin, err)
		}
		if !m.Baked || m.Version != "4.261.0" || m.Current != "4.261.0" || m.Platform != "linux-musl-x64" {
			t.Errorf("pin %q: %+v", pin, m)
		}
		// Without a lister at all (no server reachable yet) it works the same.
		if _, err := agentpkg.Ensure(context.Background(), o, nil); err != nil {
			t.Errorf("pin %q without a server: %v", pin, err)
		}
	}
	if after := snapshot(t, dir); after != before {
		t.Errorf("a baked, read-only tree was written to:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat(filepath.Join(dir, agentpkg.MarkerFile)); err == nil {
		t.Error("a marker was written into the baked tree")
	}
}

func TestEnsureBakedTreeOfAnotherVersionAsksTheServer(t *testing.T) {
	dir := bake(t, "4.250.0", "linux-x64")
	o := agentpkg.Options{Dir: dir, Version: "4.261.0", Platform: "linux-x64", UID: -1, GID: -1, Logger: slog.New(slog.DiscardHandler)}
	l := &countLister{}
	agentpkg.Ensure(context.Background(), o, l)
	if l.n == 0 {
		t.Error("a baked 4.250.0 was taken for the pinned 4.261.0")
	}
}

type countLister struct{ n int }

func (l *countLister) Packages(context.Context, string, int) ([]agentpkg.Package, error) {
	l.n++
	return nil, errors.New("not listed")
}

func TestReadTreeNamesWhatIsMissing(t *testing.T) {
	dir := bake(t, "4.261.0", "linux-x64")
	os.Chmod(filepath.Join(dir, "bin"), 0o755)
	os.Remove(filepath.Join(dir, "bin", "Agent.Worker"))
	os.Chmod(filepath.Join(dir, "bin", "Agent.Listener"), 0o644)
	_, err := agentpkg.ReadTree(dir)
	var ie *agentpkg.IncompleteError
	if !errors.As(err, &ie) {
		t.Fatalf("err %v, want an *IncompleteError", err)
	}
	for _, want := range []string{"AZP_AGENT_DIR " + dir, "bin/Agent.Worker (missing)", "bin/Agent.Listener (not executable)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// No server to install a complete one from: a configuration error (exit 2) naming it.
	o := agentpkg.Options{Dir: dir, Platform: "linux-x64", UID: -1, GID: -1, Logger: slog.New(slog.DiscardHandler)}
	if _, err := agentpkg.Ensure(context.Background(), o, nil); exit.Code(err) != 2 || !strings.Contains(err.Error(), "bin/Agent.Worker (missing)") {
		t.Errorf("Ensure: %v (exit %d)", err, exit.Code(err))
	}
	// A manifest that does not name the version is as bad as a missing one.
	os.WriteFile(filepath.Join(dir, "bin", agentpkg.DepsFile), []byte(`{"libraries":{}}`), 0o644)
	if _, err := agentpkg.ReadTree(dir); err == nil || !strings.Contains(err.Error(), "bin/"+agentpkg.DepsFile) {
		t.Errorf("bad manifest: %v", err)
	}
	if _, err := agentpkg.ReadTree(t.TempDir()); !errors.Is(err, agentpkg.ErrNoAgent) {
		t.Errorf("empty dir: %v", err)
	}
}

//go:build linux

package e2e

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// TestBakedByTar runs the whole lifecycle with an agent baked the way most custom images do it:
// `tar -xz` of the package by root, no marker of ours, files not writable by anyone else, and a
// server that lists no package at all (air-gapped, mirrors).
func TestBakedByTar(t *testing.T) {
	h := newHarness(t)
	in := h.instance("e2e-baked")
	if err := os.MkdirAll(in.agentDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xzf", h.pkg.Path, "-C", in.agentDir).CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v\n%s", err, out)
	}
	filepath.WalkDir(in.agentDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			fi, _ := d.Info()
			os.Lchown(p, 0, 0)
			if p != in.agentDir { // the agent root itself stays writable for the entrypoint
				os.Chmod(p, fi.Mode().Perm()&^0o222|0o200)
			}
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(in.agentDir, agentpkg.MarkerFile)); err == nil {
		t.Fatal("tar created a marker")
	}
	if _, err := h.sim.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/distributedtask/packages", Status: 500}); err != nil {
		t.Fatal(err)
	}
	r, id := in.startWithJob(sim.JobSpec{Name: "baked", Duration: time.Second})
	h.waitRequest(id, 30*time.Second, finished)
	h.wantResult(id, "succeeded")
	if code := r.stopWithin(10 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	in.assertRegistered(false)
	if r.countLogs("agent package already installed") == 0 {
		t.Error("the baked package was not used as it is")
	}
	if _, err := os.Stat(filepath.Join(in.agentDir, agentpkg.MarkerFile)); err == nil {
		t.Error("a marker was written into the baked tree")
	}
}

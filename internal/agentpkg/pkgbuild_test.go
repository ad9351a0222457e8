package agentpkg_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

// TestSimulatorPackages installs the simulator's fake agent packages (internal/sim/pkgbuild):
// the good one works, every bad variant is refused and leaves nothing behind.
func TestSimulatorPackages(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "azp-sim")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	out := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(out)))
	t.Cleanup(srv.Close)
	for _, v := range append([]pkgbuild.Variant{pkgbuild.Good}, pkgbuild.Variants...) {
		name := string(v)
		if name == "" {
			name = "good"
		}
		t.Run(name, func(t *testing.T) {
			res, err := pkgbuild.Build(pkgbuild.Options{Version: "4.261.0", AgentBinary: bin, OutDir: filepath.Join(out, name), FillerBytes: 2 << 20, Variant: v})
			if err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			dir := filepath.Join(parent, "agent")
			o := agentpkg.Options{Dir: dir, Version: "4.261.0", Platform: "linux-x64", UID: -1, GID: -1, Logger: slog.New(slog.DiscardHandler)}
			m, err := agentpkg.Install(context.Background(), o, srv.URL+"/"+name+"/"+res.Filename, res.SHA256)
			if v == pkgbuild.Good {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(dir, "bin", "Agent.Listener")); err != nil || m.SHA256 != res.SHA256 {
					t.Errorf("installed %+v: %v", m, err)
				}
				return
			}
			if err == nil || exit.Code(err) != 1 {
				t.Fatalf("bad variant %s: err %v (exit %d), want exit 1", v, err, exit.Code(err))
			}
			if (v == pkgbuild.WrongHash) != errors.Is(err, agentpkg.ErrHashMismatch) {
				t.Errorf("%s: %v", v, err)
			}
			if _, ok := agentpkg.Installed(dir); ok {
				t.Error("looks installed")
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("left %v", ents)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 1 {
				t.Errorf("wrote next to the agent directory: %v", ents)
			}
			if _, err := os.Stat("/tmp/azp-pkgbuild-absolute-4.261.0"); err == nil {
				t.Error("absolute entry written")
			}
		})
	}
}

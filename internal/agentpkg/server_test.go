package agentpkg_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

// TestPinnedVersionThroughTheSimulator installs a pinned version through the route the real
// self-updater uses (packages/agent/{platform}/{version}), verified with the hash it returns.
func TestPinnedVersionThroughTheSimulator(t *testing.T) {
	const token = "pin-pat-0123456789"
	s := sim.New(sim.Options{Tokens: map[string]string{token: sim.ScopeManage}})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	bin := filepath.Join(t.TempDir(), "azp-sim")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	out := t.TempDir()
	for _, v := range []string{"4.250.0", "4.261.0"} {
		res, err := pkgbuild.Build(pkgbuild.Options{Version: v, AgentBinary: bin, OutDir: out})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AddPackage(sim.PackageSpec{Version: v, Platform: "linux-x64", FilePath: res.Path}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := azdo.New(context.Background(), azdo.Options{URL: s.OrgURL(), HTTPClient: s.HTTPClient(), UnreachableFor: time.Second,
		Auth: func(context.Context) (string, error) { return secrets.BasicAuth(token), nil }})
	if err != nil {
		t.Fatal(err)
	}
	l := agentpkg.ServerLister(c)
	if _, ok := l.(agentpkg.PackageGetter); !ok {
		t.Fatal("ServerLister does not ask for single versions")
	}
	dir := filepath.Join(t.TempDir(), "agent")
	o := agentpkg.Options{Dir: dir, Version: "4.250.0", Platform: "linux-x64", UID: -1, GID: -1, Logger: slog.New(slog.DiscardHandler)}
	m, err := agentpkg.Ensure(context.Background(), o, l)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "4.250.0" || m.SHA256 == "" {
		t.Errorf("installed %+v", m)
	}
	if tree, err := agentpkg.ReadTree(dir); err != nil || tree.Version != "4.250.0" {
		t.Errorf("tree %+v %v", tree, err)
	}
	o.Version = "4.255.0"
	if _, err := agentpkg.Ensure(context.Background(), o, l); exit.Code(err) != 2 {
		t.Errorf("unpublished pin: %v (exit %d)", err, exit.Code(err))
	}
}

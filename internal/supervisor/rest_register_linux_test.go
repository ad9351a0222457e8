//go:build linux

package supervisor

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
)

// In root mode, a package tree the agent's user can change (a job's replacement of
// bin/Agent.Listener, left by a version that gave the tree to the agent) is refused, and
// registration files that are not root's are not reused.
func TestRootModeDistrustsAgentWritableTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("root mode needs root")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.MkdirAll(filepath.Join(dir, "_diag"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin", "Agent.Listener"), []byte("genuine"), 0o755)
	sv := &supervisor{s: &config.Settings{AgentDir: dir, Work: "_work"}, user: &pid1.User{UID: 4321, GID: 4321}, log: slog.New(slog.DiscardHandler)}
	os.Chown(filepath.Join(dir, "_diag"), 4321, 4321) // the agent's by design
	if err := sv.checkRootTree(); err != nil {
		t.Fatalf("a root-owned tree: %v", err)
	}
	os.Chown(filepath.Join(dir, "bin", "Agent.Listener"), 4321, 4321)
	err := sv.checkRootTree()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "bin", "Agent.Listener")) {
		t.Fatalf("an agent-owned listener: %v", err)
	}
	os.Chown(filepath.Join(dir, "bin", "Agent.Listener"), 0, 0)
	os.Chown(filepath.Join(dir, "bin"), 0, 4321)
	os.Chmod(filepath.Join(dir, "bin"), 0o775)
	if err := sv.checkRootTree(); err == nil {
		t.Fatal("a bin directory writable by the agent's group was accepted")
	}

	for _, f := range []string{".agent", ".credentials", ".credentials_rsaparams"} {
		os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o440)
	}
	if ok, why := sv.registrationTrusted(); !ok {
		t.Fatalf("root's 0440 files not trusted: %s", why)
	}
	os.Chown(filepath.Join(dir, ".credentials_rsaparams"), 4321, 4321)
	if ok, _ := sv.registrationTrusted(); ok {
		t.Fatal("an agent-owned key file was trusted")
	}
}

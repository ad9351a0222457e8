//go:build linux

package workdir

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// TestSecureAgentDir is issue 11's third attack: the image gives /azp to the agent, a job
// replaces /azp/agent by a link (or keeps the directories writable), and root installs through
// it at the next start.
func TestSecureAgentDir(t *testing.T) {
	requireRoot(t)
	mk := func(t *testing.T) (base, azp, agent string) {
		base = t.TempDir()
		os.Chmod(base, 0o755)
		azp = filepath.Join(base, "azp")
		agent = filepath.Join(azp, "agent")
		if err := os.MkdirAll(agent, 0o755); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Run("job's symlink at the agent dir", func(t *testing.T) {
		_, _, agent := mk(t)
		os.RemoveAll(agent)
		target := plant(t, agent) // owned by the agent's uid
		_, _, err := SecureAgentDir(agent, testUID, testUID, true)
		wantCode(t, err, exit.Usage, agent, "symbolic link owned by uid")
		assertUntouched(t, target)
	})
	t.Run("agent-owned parent refused without repair, repaired with it", func(t *testing.T) {
		_, azp, agent := mk(t)
		os.Chown(azp, testUID, testUID)
		os.Chown(agent, testUID, testUID)
		os.Chmod(agent, 0o775)
		_, _, err := SecureAgentDir(agent, testUID, testUID, false)
		wantCode(t, err, exit.Usage, azp, "owned by the agent's uid")
		got, repaired, err := SecureAgentDir(agent, testUID, testUID, true)
		if err != nil || got != agent || len(repaired) != 2 {
			t.Fatalf("repair: %q %q %v", got, repaired, err)
		}
		for _, d := range []string{azp, agent} {
			fi, _ := os.Stat(d)
			if u, g := owner(t, d); u != 0 || g != 0 || fi.Mode().Perm()&0o022 != 0 {
				t.Errorf("%s after repair: %d:%d %v", d, u, g, fi.Mode())
			}
		}
		if _, _, err := SecureAgentDir(agent, testUID, testUID, false); err != nil {
			t.Errorf("after repair: %v", err)
		}
	})
	t.Run("group-writable grandparent is refused even with repair", func(t *testing.T) {
		base, _, agent := mk(t)
		os.Chown(base, 0, testUID)
		os.Chmod(base, 0o775)
		_, _, err := SecureAgentDir(agent, testUID, testUID, true)
		wantCode(t, err, exit.Usage, base, "writable by the agent's group")
	})
	t.Run("operator's root-owned link is followed", func(t *testing.T) {
		base, _, agent := mk(t)
		link := filepath.Join(base, "link")
		if err := os.Symlink(agent, link); err != nil {
			t.Fatal(err)
		}
		got, _, err := SecureAgentDir(link, testUID, testUID, false)
		if err != nil || got != agent {
			t.Errorf("got %q, %v; want %s", got, err, agent)
		}
	})
}

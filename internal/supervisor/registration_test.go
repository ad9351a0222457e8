package supervisor

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/register"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// simServer is the simulator with one pool and a manage-scope PAT, and a client of it.
func simServer(t *testing.T) (*sim.Server, *azdo.Client, int) {
	t.Helper()
	const pat = "supervisor-test-pat-0123456789"
	s := sim.New(sim.Options{Tokens: map[string]string{pat: sim.ScopeManage}})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	pool := s.AddPool("Default")
	c, err := azdo.New(context.Background(), azdo.Options{URL: s.OrgURL(), HTTPClient: s.HTTPClient(),
		Auth:           func(context.Context) (string, error) { return secrets.BasicAuth(pat), nil },
		UnreachableFor: 2 * time.Second, RetryWaitMin: 20 * time.Millisecond, RetryWaitMax: 200 * time.Millisecond, MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, pool
}

// Deregistration deletes only an agent that is still ours: with --replace another container of
// the same name can hold the name (and a new registration another id) by the time we stop.
func TestRemoveOnlyOurs(t *testing.T) {
	s, c, pool := simServer(t)
	if err := s.SeedAgents("Default", 1, "offline", time.Time{}, "agent-"); err != nil {
		t.Fatal(err)
	}
	theirs, _ := s.Agent("Default", "agent-0")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	newReg := func(id int, mayExist bool) *registration {
		os.WriteFile(filepath.Join(dir, ".agent"), []byte(`{"agentId":1}`), 0o600)
		return &registration{server: c, pool: pool, poolName: "Default", name: "agent-0", agentDir: dir, log: log, id: id, mayExist: mayExist}
	}
	deadline := func() time.Time { return time.Now().Add(5 * time.Second) }

	// Our id was another: the agent with our name is someone else's and stays.
	if err := newReg(theirs.ID+100, false).Remove(deadline()); err != nil {
		t.Fatal(err)
	}
	if a, ok := s.Agent("Default", "agent-0"); !ok || a.ID != theirs.ID {
		t.Fatal("deleted an agent that is not ours")
	}
	if _, err := os.Stat(filepath.Join(dir, ".agent")); !os.IsNotExist(err) {
		t.Error("the local configuration of a registration that is gone stays")
	}
	// Nothing of ours registered (id unknown, configure never started): nothing is touched.
	if err := newReg(0, false).Remove(deadline()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Agent("Default", "agent-0"); !ok {
		t.Fatal("deleted an agent although nothing was registered")
	}
	// Same name, same id: ours, deleted.
	r := newReg(theirs.ID, false)
	if err := r.Remove(deadline()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Agent("Default", "agent-0"); ok {
		t.Fatal("our agent was not deleted")
	}
	if r.Remove(deadline()) != nil || r.owned() {
		t.Error("a second Remove must do nothing")
	}
	// Already gone: nothing to do, no error.
	if err := newReg(theirs.ID, false).Remove(deadline()); err != nil {
		t.Fatal(err)
	}
}

// --replace by another container of the same name keeps the agent's id and OAuth client but
// installs that container's key: the agent is no longer ours, and our stop must not delete it.
func TestRemoveLeavesAReplacedAgent(t *testing.T) {
	s, c, pool := simServer(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	registerIn := func(dir string) int {
		d, err := register.OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		res, err := register.Register(context.Background(), register.Options{Client: c, Dir: d, Owner: register.Private(),
			Pool: "Default", Name: "agent-r", Work: "_work", Version: "4.260.0", Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		return res.Settings.AgentID
	}
	ours, theirs := t.TempDir(), t.TempDir()
	id := registerIn(ours)
	if registerIn(theirs) != id {
		t.Fatal("replace did not keep the id")
	}
	reg := func(dir string) *registration {
		return &registration{server: c, pool: pool, poolName: "Default", name: "agent-r", agentDir: dir, log: log, id: id}
	}
	if err := reg(ours).Remove(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if a, ok := s.Agent("Default", "agent-r"); !ok || a.ID != id {
		t.Fatal("deleted the agent another container had taken over with --replace")
	}
	if err := reg(theirs).Remove(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Agent("Default", "agent-r"); ok {
		t.Fatal("the agent's current holder could not remove it")
	}
}

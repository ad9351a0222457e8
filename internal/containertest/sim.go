//go:build linux

package containertest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// Sim is a simulator running in a container, driven with its own client (`azp-sim jobs ...`,
// `azp-sim agents ...`) exec'd in that container against its loopback address.
type Sim struct {
	Container string // container name or id
	Org       string // organisation name (--org)
}

func (s Sim) url() string { return "http://127.0.0.1:8080/" + s.Org }

// Client runs `azp-sim <args> --url <the simulator>` in the simulator's container.
func (s Sim) Client(args ...string) (string, error) {
	full := append([]string{"exec", s.Container, "/usr/local/bin/azp-sim"}, args...)
	full = append(full, "--url", s.url())
	return Try(full...)
}

// Agents lists the agents of pool as the server sees them.
func (s Sim) Agents(pool string) ([]sim.AgentView, error) {
	out, err := s.Client("agents", "list", "--json", "--pool", pool)
	if err != nil {
		return nil, err
	}
	var a []sim.AgentView
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		return nil, fmt.Errorf("agents list: %w: %s", err, out)
	}
	return a, nil
}

// Agent returns the named agent, or nil when the pool does not have it.
func (s Sim) Agent(pool, name string) (*sim.AgentView, error) {
	all, err := s.Agents(pool)
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].Name == name {
			return &all[i], nil
		}
	}
	return nil, nil
}

// Jobs lists every job request.
func (s Sim) Jobs() ([]sim.RequestView, error) {
	out, err := s.Client("jobs", "list", "--json")
	if err != nil {
		return nil, err
	}
	var r []sim.RequestView
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("jobs list: %w: %s", err, out)
	}
	return r, nil
}

// Job returns the request with this id.
func (s Sim) Job(id int64) (sim.RequestView, error) {
	all, err := s.Jobs()
	if err != nil {
		return sim.RequestView{}, err
	}
	for _, r := range all {
		if r.ID == id {
			return r, nil
		}
	}
	return sim.RequestView{}, fmt.Errorf("no job %d", id)
}

// Queue queues a job and returns its request id.
func (s Sim) Queue(t testing.TB, args ...string) int64 {
	t.Helper()
	out, err := s.Client(append([]string{"jobs", "queue"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	if _, err := fmt.Sscan(strings.TrimSpace(out), &id); err != nil {
		t.Fatalf("jobs queue printed %q", out)
	}
	return id
}

type simRequest = sim.RequestView

// WaitOnline waits until the server reports the agent online.
func (s Sim) WaitOnline(t testing.TB, name string) {
	t.Helper()
	Eventually(t, 4*time.Minute, name+" online", func() error {
		a, err := s.Agent(pool, name)
		if err != nil {
			return err
		}
		if a == nil || a.Status != "online" {
			return fmt.Errorf("agent %+v", a)
		}
		return nil
	})
}

// WaitGone waits until the pool no longer has the agent.
func (s Sim) WaitGone(t testing.TB, name string, within time.Duration) {
	t.Helper()
	Eventually(t, within, name+" deregistered", func() error {
		a, err := s.Agent(pool, name)
		if err != nil {
			return err
		}
		if a != nil {
			return fmt.Errorf("agent %+v", a)
		}
		return nil
	})
}

// WaitFinished waits until the job has finished and returns it.
func (s Sim) WaitFinished(t testing.TB, id int64, within time.Duration) (r simRequest) {
	t.Helper()
	Eventually(t, within, fmt.Sprintf("job %d finished", id), func() error {
		var err error
		if r, err = s.Job(id); err != nil {
			return err
		}
		if r.FinishTime.IsZero() {
			return fmt.Errorf("job %+v", r)
		}
		return nil
	})
	return r
}

// WaitReceived waits until an agent has received the job (it runs).
func (s Sim) WaitReceived(t testing.TB, id int64) (r simRequest) {
	t.Helper()
	Eventually(t, 2*time.Minute, fmt.Sprintf("job %d received", id), func() error {
		var err error
		if r, err = s.Job(id); err != nil {
			return err
		}
		if r.ReceiveTime.IsZero() {
			return fmt.Errorf("job %+v", r)
		}
		return nil
	})
	return r
}

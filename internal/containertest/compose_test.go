//go:build linux

package containertest

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var agentServices = []string{"azp-agent-1", "azp-agent-2"}

// agentName is the name compose.yaml gives a service's agent: AZP_AGENT_NAME_PREFIX + hostname.
func agentName(service string) string { return "compose-" + service }

// TestCompose starts compose.yaml's demo profile and follows one project through the issue's
// scenarios, in order: up, what a job can reach, a killed agent, and the stop.
func TestCompose(t *testing.T) {
	t.Parallel()
	im := Build(t)
	// A 30 s budget (README table: a job may run for 19 s): the same value becomes
	// stop_grace_period in compose.yaml.
	p := NewProject(t, im, "AZP_STOP_TIMEOUT=30s")
	if out, err := p.Compose("--profile", "demo", "up", "-d", "--no-build"); err != nil {
		t.Fatalf("docker compose --profile demo up -d --no-build: %v\n%s", err, out)
	}
	s := Sim{Container: p.Container(t, "azp-sim"), Org: "sim"}
	containers := map[string]string{}
	for _, svc := range agentServices {
		containers[svc] = p.Container(t, svc)
	}

	if !t.Run("Up", func(t *testing.T) { composeUp(t, s, containers) }) {
		t.FailNow()
	}
	t.Run("JobCannotReachSecrets", func(t *testing.T) { jobCannotReachSecrets(t, p, containers["azp-agent-1"]) })
	t.Run("KillPruneRestart", func(t *testing.T) { killPruneRestart(t, s, containers) })
	t.Run("Stop", func(t *testing.T) { composeStop(t, p, s, containers) })
}

// composeUp: both agents online with different work slots, reported healthy by docker, and a
// queued job runs.
func composeUp(t *testing.T, s Sim, containers map[string]string) {
	for _, svc := range agentServices {
		s.WaitOnline(t, agentName(svc))
	}
	slots := map[string]string{}
	for _, svc := range agentServices {
		a, err := AgentFile(containers[svc])
		if err != nil {
			t.Fatal(err)
		}
		wf, _ := a["workFolder"].(string)
		if !strings.HasPrefix(wf, "/azp/work/slot-") {
			t.Errorf("%s: workFolder %q, want a slot of the shared /azp/work volume", svc, wf)
		}
		slots[svc] = wf
	}
	if slots["azp-agent-1"] == slots["azp-agent-2"] {
		t.Errorf("both agents use the work folder %s", slots["azp-agent-1"])
	}
	// The image's HEALTHCHECK / compose healthcheck: docker's own verdict. The first probe runs
	// one interval (30 s) after the start.
	for _, svc := range agentServices {
		c := containers[svc]
		Eventually(t, 3*time.Minute, svc+" healthy", func() error {
			if _, _, h := State(t, c); h != "healthy" {
				return fmt.Errorf("health %s", h)
			}
			return nil
		})
	}
	id := s.Queue(t, "--pool", pool, "--name", "compose up", "--duration", "2s")
	r := s.WaitFinished(t, id, 2*time.Minute)
	if r.Result != "succeeded" || !slices.Contains([]string{agentName("azp-agent-1"), agentName("azp-agent-2")}, r.AgentName) {
		t.Errorf("job %d: result %q on %q, want succeeded on one of the compose agents", id, r.Result, r.AgentName)
	}
}

// killPruneRestart: `docker kill` of one agent leaves its agent offline on the server (a ghost);
// `azp-entrypoint prune` removes it; starting the container again registers it again in the slot
// it had.
func killPruneRestart(t *testing.T, s Sim, containers map[string]string) {
	c := containers["azp-agent-2"]
	name := agentName("azp-agent-2")
	before, err := AgentFile(c)
	if err != nil {
		t.Fatal(err)
	}
	Must(t, "kill", c)
	Eventually(t, time.Minute, name+" offline (a ghost)", func() error {
		a, err := s.Agent(pool, name)
		if err != nil {
			return err
		}
		if a == nil || a.Status != "offline" {
			return fmt.Errorf("agent %+v", a)
		}
		return nil
	})
	// The operator's prune, run in the other agent's container (it has the settings and the
	// token file): the ghost goes, the online agent stays.
	out, err := Try("exec", containers["azp-agent-1"], "/usr/local/bin/azp-entrypoint", "prune", "--offline-for", "0s")
	if err != nil {
		t.Fatalf("prune: %v\n%s", err, out)
	}
	if a, err := s.Agent(pool, name); err != nil || a != nil {
		t.Fatalf("after prune, %s: %+v %v", name, a, err)
	}
	if a, err := s.Agent(pool, agentName("azp-agent-1")); err != nil || a == nil {
		t.Fatalf("prune removed the online agent: %v", err)
	}
	Must(t, "start", c)
	s.WaitOnline(t, name)
	after, err := AgentFile(c)
	if err != nil {
		t.Fatal(err)
	}
	if before["workFolder"] != after["workFolder"] {
		t.Errorf("restarted agent took work folder %v, it had %v", after["workFolder"], before["workFolder"])
	}
}

// composeStop: `docker compose stop` with one short job and one long job running: per the README's
// table (AZP_STOP_TIMEOUT 30 s: a job may run for 19 s) the short one finishes, the long one is
// cancelled; both agents are deregistered and exit 0 inside stop_grace_period (docker would
// SIGKILL them at its end: exit 137).
func composeStop(t *testing.T, p *Project, s Sim, containers map[string]string) {
	for _, svc := range agentServices {
		s.WaitOnline(t, agentName(svc))
	}
	short := s.Queue(t, "--pool", pool, "--agent", agentName("azp-agent-1"), "--name", "drained", "--duration", "8s")
	long := s.Queue(t, "--pool", pool, "--agent", agentName("azp-agent-2"), "--name", "cancelled", "--duration", "10m")
	s.WaitReceived(t, short)
	s.WaitReceived(t, long)
	if out, err := p.Compose("--profile", "demo", "stop", "azp-agent-1", "azp-agent-2"); err != nil {
		t.Fatalf("docker compose stop: %v\n%s", err, out)
	}
	for _, svc := range agentServices {
		status, code, _ := State(t, containers[svc])
		if status != "exited" || code != 0 {
			t.Errorf("%s: %s with exit code %d, want exited 0 inside stop_grace_period", svc, status, code)
		}
		if a, err := s.Agent(pool, agentName(svc)); err != nil || a != nil {
			t.Errorf("%s: still registered after the stop: %+v %v", svc, a, err)
		}
	}
	if r, err := s.Job(short); err != nil || r.Result != "succeeded" {
		t.Errorf("the 8 s job (inside the 19 s a job may run) should finish: %+v %v", r, err)
	}
	if r, err := s.Job(long); err != nil || r.Result != "canceled" {
		t.Errorf("the 10 min job should be cancelled: %+v %v", r, err)
	}
}

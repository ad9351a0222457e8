package scale

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs"
)

func TestDemandMatching(t *testing.T) {
	caps := Capabilities{"docker": "true", "java": "17", "Agent.Version": "4.261.0", "Agent.OS": "Linux", "node": "20.11.1-beta"}
	for _, tc := range []struct {
		demands []string
		want    bool
	}{
		{nil, true},
		{[]string{"docker"}, true},
		{[]string{"DOCKER"}, true}, // names without case
		{[]string{"maven"}, false},
		{[]string{"java -equals 17"}, true},
		{[]string{"Agent.OS -equals linux"}, true}, // values without case
		{[]string{"java -equals 11"}, false},
		{[]string{"docker", "maven"}, false}, // every demand
		{[]string{"Agent.Version -gtVersion 4.200.0"}, true},
		{[]string{"Agent.Version -gtVersion 4.261.0"}, true},
		{[]string{"Agent.Version -gtVersion 4.262"}, false},
		{[]string{"Agent.Version -gtVersion 4.99.0"}, true}, // as versions, not strings
		{[]string{"node -gtVersion 20.9"}, true},            // "-beta" cut as the service does
		{[]string{"Agent.Version -gtVersion x"}, false},
		{[]string{"java -notequals 11"}, false}, // unknown operator: not met
		{[]string{""}, false},
	} {
		if got := caps.Meets(tc.demands); got != tc.want {
			t.Errorf("Meets(%q) = %v, want %v", tc.demands, got, tc.want)
		}
	}
}

func TestParseCapabilities(t *testing.T) {
	c, err := ParseCapabilities("docker, java=17 ,node.js=20")
	if err != nil || c["docker"] != "true" || c["java"] != "17" || c["node.js"] != "20" {
		t.Fatalf("%v %v", c, err)
	}
	for _, bad := range []string{"1abc", "a b=1", "Agent.OS=Linux", "AZP_TOKEN=x", "x,X"} {
		if _, err := ParseCapabilities(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestStandbySchedule(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	sb, err := ParseStandby("mon-fri 07:00-19:00=3, sat 09:00-13:00=1, fri 12:00-24:00=5", berlin)
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC()
	}
	for when, want := range map[string]int{
		"2026-12-07 06:59": 0, // Monday
		"2026-12-07 07:00": 3,
		"2026-12-07 18:59": 3,
		"2026-12-07 19:00": 0,
		"2026-12-11 13:00": 5, // Friday: overlapping entries, the largest
		"2026-12-11 23:59": 5,
		"2026-12-12 10:00": 1, // Saturday
		"2026-12-13 10:00": 0, // Sunday: unlisted
	} {
		if got := sb.At(at(when)); got != want {
			t.Errorf("%s: %d, want %d", when, got, want)
		}
	}
	if sb.Max() != 5 {
		t.Errorf("max %d", sb.Max())
	}
	if n, _ := ParseStandby("2", nil); n.At(time.Now()) != 2 {
		t.Error("fixed number")
	}
	wrap, err := ParseStandby("fri-mon 00:00-24:00=2", time.UTC)
	if err != nil || wrap.At(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)) != 2 || wrap.At(time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC)) != 0 {
		t.Errorf("wrapping day range: %v", err)
	}
	for _, bad := range []string{"-1", "mon 07:00-19:00", "mon 19:00-07:00=1", "xyz 07:00-19:00=1", "mon 7-19=1", "mon 07:00-25:00=1", "mon 07:00-19:00=x"} {
		if _, err := ParseStandby(bad, time.UTC); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func profile() Profile {
	return Profile{Prefix: "scale-", Container: "agent", Caps: Capabilities{"docker": "true", "Agent.OS": "Linux"},
		Mode: ModeOnce, Max: 10, BootTimeout: 5 * time.Minute, MaxFailed: 3}
}

func tid(n int) string { return fmt.Sprintf("%032x", n) }

func task(n int, status string, age time.Duration) Task {
	desired := "RUNNING"
	if status == "STOPPING" || status == "DEPROVISIONING" || status == "STOPPED" {
		desired = "STOPPED"
	}
	return Task{ID: tid(n), LastStatus: status, DesiredStatus: desired, CreatedAt: t0.Add(-age)}
}

func agentOf(n int, online bool, assigned uint64) Agent {
	return Agent{ID: n, Name: ecs.AgentName("scale-", tid(n), "agent"), Online: online, Enabled: true, Assigned: assigned}
}

func pending(ids ...uint64) []Request {
	var out []Request
	for _, id := range ids {
		out = append(out, Request{ID: id, Pending: true, QueueTime: t0.Add(-time.Duration(100-id) * time.Second)})
	}
	return out
}

func exitCode(c int) *int { return &c }

func TestDecideLaunches(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mod        func(*Profile)
		in         Inputs
		launch     int
		launchFor  []uint64
		starting   int
		idle       int
		paused     bool
		wantInWhy  string
		bootTimout int
	}{
		{name: "burst", in: Inputs{Requests: pending(1, 2, 3)}, launch: 3, launchFor: []uint64{1, 2, 3}},
		{name: "unmatched demands launch nothing", in: Inputs{Requests: []Request{{ID: 1, Pending: true, Demands: []string{"maven"}}}}, launch: 0},
		{name: "assigned requests are not pending", in: Inputs{Requests: []Request{{ID: 1}}}, launch: 0},
		{name: "starting tasks count", in: Inputs{Requests: pending(1, 2, 3), Tasks: []Task{{ID: tid(1), LastStatus: "PENDING", DesiredStatus: "RUNNING", CreatedAt: t0, Requests: []uint64{1}}}},
			launch: 2, launchFor: []uint64{2, 3}, starting: 1},
		{name: "idle agents count", in: Inputs{Requests: pending(1, 2), Tasks: []Task{task(1, "RUNNING", time.Minute)}, Agents: []Agent{agentOf(1, true, 0)}}, launch: 1, idle: 1},
		{name: "busy agents do not", in: Inputs{Requests: pending(2), Tasks: []Task{task(1, "RUNNING", time.Minute)}, Agents: []Agent{agentOf(1, true, 1)}}, launch: 1},
		{name: "standby", in: Inputs{Standby: 2}, launch: 2},
		{name: "max counts every task not STOPPED", mod: func(p *Profile) { p.Max = 3 },
			in:     Inputs{Requests: pending(1, 2, 3, 4, 5), Tasks: []Task{task(1, "STOPPING", time.Minute), task(2, "DEPROVISIONING", time.Minute), task(3, "STOPPED", time.Minute)}},
			launch: 1, wantInWhy: "AZP_SCALE_MAX"},
		{name: "parallel jobs less used less starting", in: Inputs{Requests: pending(1, 2, 3, 4), Parallel: &Parallel{Total: 3, Used: 1},
			Tasks: []Task{task(7, "PROVISIONING", 0)}}, launch: 1, starting: 1, wantInWhy: "parallel jobs"},
		{name: "parallel exhausted", in: Inputs{Requests: pending(1), Parallel: &Parallel{Total: 1, Used: 1}}, launch: 0},
		{name: "boot timeout", in: Inputs{Tasks: []Task{task(1, "RUNNING", 6*time.Minute)}}, starting: 1, bootTimout: 1},
		{name: "an agent seen online and gone is leaving, not starting", in: Inputs{Requests: pending(1), Tasks: []Task{task(1, "RUNNING", 6*time.Minute)},
			SeenOnline: map[string]bool{tid(1): true}}, launch: 1},
		{name: "breaker", in: Inputs{Requests: pending(1), Tasks: []Task{
			{ID: tid(1), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-3 * time.Minute), StoppedAt: t0.Add(-time.Minute), ExitCode: exitCode(2)},
			{ID: tid(2), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-4 * time.Minute), StoppedReason: ReasonBootTimeout, ExitCode: exitCode(0)},
			{ID: tid(3), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-5 * time.Minute), StopCode: "TaskFailedToStart"},
			{ID: tid(4), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-9 * time.Minute), ExitCode: exitCode(0)},
		}}, launch: 0, paused: true, wantInWhy: "paused"},
		{name: "breaker: a success in between resets", in: Inputs{Requests: pending(1), Tasks: []Task{
			{ID: tid(1), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-3 * time.Minute), StoppedAt: t0.Add(-time.Minute), ExitCode: exitCode(2)},
			{ID: tid(2), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-4 * time.Minute), ExitCode: exitCode(0)},
			{ID: tid(3), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-5 * time.Minute), ExitCode: exitCode(1)},
			{ID: tid(4), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-6 * time.Minute), ExitCode: exitCode(1)},
		}}, launch: 1},
		{name: "breaker: retries after one boot timeout", in: Inputs{Requests: pending(1), Tasks: []Task{
			{ID: tid(1), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-9 * time.Minute), StoppedAt: t0.Add(-6 * time.Minute), ExitCode: exitCode(2)},
			{ID: tid(2), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-10 * time.Minute), ExitCode: exitCode(2)},
			{ID: tid(3), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: t0.Add(-11 * time.Minute), ExitCode: exitCode(2)},
		}}, launch: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := profile()
			if tc.mod != nil {
				tc.mod(&p)
			}
			tc.in.Now = t0
			pl := Decide(p, tc.in)
			if pl.Launch != tc.launch || pl.Starting != tc.starting || pl.Idle != tc.idle || pl.Paused != tc.paused || len(pl.BootTimedOut) != tc.bootTimout {
				t.Fatalf("plan %+v", pl)
			}
			if tc.launchFor != nil && fmt.Sprint(pl.LaunchFor) != fmt.Sprint(tc.launchFor) {
				t.Fatalf("launch for %v, want %v", pl.LaunchFor, tc.launchFor)
			}
			if !strings.Contains(pl.Why, tc.wantInWhy) {
				t.Fatalf("why %q lacks %q", pl.Why, tc.wantInWhy)
			}
		})
	}
}

func TestDecideScaleInAndGhosts(t *testing.T) {
	p := profile()
	p.Mode = ModePersistent
	disabled := agentOf(4, true, 0)
	disabled.Enabled = false
	in := Inputs{Now: t0, Standby: 1,
		Tasks: []Task{task(1, "RUNNING", 3*time.Minute), task(2, "RUNNING", 2*time.Minute), task(3, "RUNNING", time.Minute), task(4, "RUNNING", time.Minute), task(9, "STOPPED", time.Hour)},
		Agents: []Agent{agentOf(1, true, 0), agentOf(2, true, 0), agentOf(3, true, 42), disabled,
			agentOf(9, false, 0),                          // ghost: its task is STOPPED
			{Name: "scale-placeholder"},                   // never a ghost
			{Name: "other-" + tid(5)},                     // not ours
			{Name: "scale-" + tid(6) + "-agent", ID: 66}}, // ghost: no task at all
	}
	pl := Decide(p, in)
	if len(pl.ScaleIn) != 1 || pl.ScaleIn[0].Task.ID != tid(1) {
		t.Fatalf("scale in %+v (idle %d)", pl.ScaleIn, pl.Idle)
	}
	if len(pl.Disabled) != 1 || pl.Disabled[0].Task.ID != tid(4) {
		t.Fatalf("disabled %+v", pl.Disabled)
	}
	if len(pl.Ghosts) != 2 || pl.Ghosts[0].ID != 9 || pl.Ghosts[1].ID != 66 {
		t.Fatalf("ghosts %+v", pl.Ghosts)
	}
	// Once mode never scales in: idle agents leave by their idle timeout.
	p.Mode = ModeOnce
	if pl := Decide(p, in); len(pl.ScaleIn) != 0 || len(pl.Disabled) != 0 {
		t.Fatalf("once mode scale in %+v", pl)
	}
}

func TestRequestTag(t *testing.T) {
	if s := FormatRequests([]uint64{3, 14, 15}); s != "3 14 15" || fmt.Sprint(ParseRequests(s)) != "[3 14 15]" {
		t.Fatal(s)
	}
}

// Package scale is `azp-entrypoint scale`: it keeps one agent pool supplied with ECS agent tasks
// of one task definition (a profile), launching on demand and cleaning up what leaks.
//
// Decide is a pure function from one observation (the pool's unfinished job requests, its agents,
// this scaler's ECS tasks, the organisation's parallel jobs) to a plan (how many tasks to launch
// and for which requests, which tasks to stop, which ghost agents to delete, whether launching is
// paused). The loop (Scaler) gathers the observation, applies the plan and keeps nothing but short
// "seen on the previous pass" marks, so that a restarted scaler rebuilds its view from ECS and the
// server and never launches twice for one request.
package scale

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs"
)

// Agent modes (AZP_SCALE_AGENT_MODE).
const (
	ModeOnce       = "once"
	ModePersistent = "persistent"
)

// Reasons the scaler gives StopTask; they are read back from stoppedReason after a restart to
// tell a failed launch from a scale-in.
const (
	ReasonBootTimeout = "azp-scale: agent not online within the boot timeout"
	ReasonScaleIn     = "azp-scale: idle agent scaled in"
)

// Task is one of this scaler's ECS tasks as DescribeTasks reports it.
type Task struct {
	ID, ARN                   string
	LastStatus, DesiredStatus string
	CreatedAt, StoppedAt      time.Time // StoppedAt: stoppedAt, else stoppingAt, else zero
	StopCode, StoppedReason   string
	ExitCode                  *int
	Requests                  []uint64 // the azp-entrypoint:request tag
}

// Active reports whether the task counts against AZP_SCALE_MAX (any lastStatus but STOPPED).
func (t Task) Active() bool { return t.LastStatus != "STOPPED" }

// Agent is an agent of the pool.
type Agent struct {
	ID              int
	Name            string
	Online, Enabled bool
	Assigned        uint64 // assigned request id; 0: none
	StatusChangedOn time.Time
}

// Request is an unfinished job request.
type Request struct {
	ID        uint64
	Demands   []string
	QueueTime time.Time
	Pending   bool // no assign time, no result
}

// Parallel is the organisation's private parallel jobs.
type Parallel struct{ Total, Used int }

// Profile is what the scaler launches.
type Profile struct {
	Prefix, Container string
	Caps              Capabilities // including Agent.OS, Agent.OSArchitecture, Agent.Version
	Mode              string
	Max               int
	BootTimeout       time.Duration
	MaxFailed         int
}

// Inputs is one observation.
type Inputs struct {
	Now      time.Time
	Requests []Request
	Agents   []Agent
	Tasks    []Task    // this scaler's tasks, STOPPED ones included
	Parallel *Parallel // nil: the server reports no limit
	Standby  int       // idle agents wanted now
	// SeenOnline holds the tasks whose agent this process saw online (a refinement only: after a
	// restart it is empty and the decisions stay safe).
	SeenOnline map[string]bool
}

// TaskAgent pairs an active task with its agent (nil while it has none).
type TaskAgent struct {
	Task  Task
	Agent *Agent
}

// Plan is what to do.
type Plan struct {
	Pending, Matched, Starting, Idle, Busy, Active int
	OldestPending                                  time.Duration
	Launch                                         int
	LaunchFor                                      []uint64 // request ids the launches are for, oldest first
	Why                                            string

	BootTimedOut []TaskAgent // starting longer than the boot timeout: stop (counts as a failed launch)
	ScaleIn      []TaskAgent // persistent mode: idle surplus
	Disabled     []TaskAgent // persistent mode: idle agents left disabled (a crashed scale-in)
	Ghosts       []Agent     // offline agents of ours whose task is gone

	FailedStreak int
	Paused       bool
	PausedUntil  time.Time
}

// PlaceholderName is the scaler's placeholder agent.
func PlaceholderName(prefix string) string { return prefix + "placeholder" }

// Decide turns one observation into a plan.
func Decide(p Profile, in Inputs) Plan {
	var pl Plan
	byName := map[string]*Agent{}
	for i := range in.Agents {
		byName[strings.ToLower(in.Agents[i].Name)] = &in.Agents[i]
	}
	ours := map[string]bool{} // agent names of active tasks
	covered := map[uint64]bool{}
	var idle []TaskAgent
	for _, t := range in.Tasks {
		if !t.Active() {
			continue
		}
		pl.Active++
		name := strings.ToLower(ecs.AgentName(p.Prefix, t.ID, p.Container))
		ours[name] = true
		a := byName[name]
		ta := TaskAgent{Task: t, Agent: a}
		switch {
		case t.DesiredStatus == "STOPPED":
			// on its way out
		case a != nil && a.Assigned != 0:
			pl.Busy++
		case a != nil && a.Online && a.Enabled:
			pl.Idle++
			idle = append(idle, ta)
		case a != nil && a.Online:
			if p.Mode == ModePersistent {
				pl.Disabled = append(pl.Disabled, ta)
			}
		case in.SeenOnline[t.ID]:
			// its agent was online and is gone: a once-mode agent leaving after its job
		default:
			pl.Starting++
			for _, r := range t.Requests {
				covered[r] = true
			}
			if p.BootTimeout > 0 && in.Now.Sub(t.CreatedAt) > p.BootTimeout {
				pl.BootTimedOut = append(pl.BootTimedOut, ta)
			}
		}
	}

	// Pending requests this profile serves, oldest first.
	var matched []Request
	for _, r := range in.Requests {
		if !r.Pending {
			continue
		}
		pl.Pending++
		if p.Caps.Meets(r.Demands) {
			matched = append(matched, r)
		}
	}
	sort.Slice(matched, func(i, j int) bool {
		if !matched[i].QueueTime.Equal(matched[j].QueueTime) {
			return matched[i].QueueTime.Before(matched[j].QueueTime)
		}
		return matched[i].ID < matched[j].ID
	})
	pl.Matched = len(matched)
	if len(matched) > 0 && !matched[0].QueueTime.IsZero() {
		pl.OldestPending = in.Now.Sub(matched[0].QueueTime)
	}

	// The breaker, rebuilt from the tasks themselves.
	pl.FailedStreak, pl.PausedUntil = failedStreak(in.Tasks, byName, p, in.SeenOnline)
	if p.MaxFailed > 0 && pl.FailedStreak >= p.MaxFailed && in.Now.Before(pl.PausedUntil) {
		pl.Paused = true
	}

	want := len(matched) + in.Standby - (pl.Starting + pl.Idle)
	capMax := p.Max - pl.Active
	launch := max(want, 0)
	why := fmt.Sprintf("%d pending matching + %d standby - (%d starting + %d idle) = %d", len(matched), in.Standby, pl.Starting, pl.Idle, want)
	if launch > capMax {
		launch = max(capMax, 0)
		why += fmt.Sprintf("; capped by AZP_SCALE_MAX %d with %d tasks not STOPPED", p.Max, pl.Active)
	}
	if in.Parallel != nil {
		capPar := in.Parallel.Total - in.Parallel.Used - pl.Starting
		if launch > capPar {
			launch = max(capPar, 0)
			why += fmt.Sprintf("; capped by parallel jobs %d - %d in use - %d starting", in.Parallel.Total, in.Parallel.Used, pl.Starting)
		}
	}
	if pl.Paused && launch > 0 {
		launch = 0
		why += fmt.Sprintf("; paused after %d failed launches in a row until %s", pl.FailedStreak, pl.PausedUntil.UTC().Format(time.RFC3339))
	}
	pl.Launch, pl.Why = launch, why
	for _, r := range matched {
		if len(pl.LaunchFor) >= launch {
			break
		}
		if !covered[r.ID] {
			pl.LaunchFor = append(pl.LaunchFor, r.ID)
		}
	}

	// Persistent mode: scale in idle surplus (never a busy agent: the loop re-checks after disabling).
	if p.Mode == ModePersistent {
		surplus := pl.Idle + pl.Starting - (len(matched) + in.Standby)
		sort.Slice(idle, func(i, j int) bool { return idle[i].Task.CreatedAt.Before(idle[j].Task.CreatedAt) })
		for i := 0; i < surplus && i < len(idle); i++ {
			pl.ScaleIn = append(pl.ScaleIn, idle[i])
		}
	}

	// Ghosts: offline agents named like ours whose task is no longer active.
	placeholder := strings.ToLower(PlaceholderName(p.Prefix))
	for _, a := range in.Agents {
		n := strings.ToLower(a.Name)
		if a.Online || a.Assigned != 0 || n == placeholder || !strings.HasPrefix(n, strings.ToLower(p.Prefix)) || ours[n] {
			continue
		}
		if !looksLikeTaskAgent(a.Name[len(p.Prefix):]) {
			continue
		}
		pl.Ghosts = append(pl.Ghosts, a)
	}
	return pl
}

// looksLikeTaskAgent reports whether rest (the name after the prefix) starts with an ECS task id
// (32 hex digits), as run names agents on ECS.
func looksLikeTaskAgent(rest string) bool {
	if len(rest) < 32 {
		return false
	}
	for _, c := range rest[:32] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return len(rest) == 32 || rest[32] == '-'
}

// failedStreak counts the most recent launches that failed, newest first, up to the first that
// succeeded; a launch fails when its task stops before its agent was online (a non-zero exit, a
// container that could not start, or a stop for the boot timeout). It returns the streak and
// when the pause it causes ends (the newest failure's stop plus one boot timeout).
func failedStreak(tasks []Task, byName map[string]*Agent, p Profile, seen map[string]bool) (int, time.Time) {
	sorted := append([]Task(nil), tasks...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].CreatedAt.After(sorted[j].CreatedAt) })
	streak := 0
	var until time.Time
	for _, t := range sorted {
		a := byName[strings.ToLower(ecs.AgentName(p.Prefix, t.ID, p.Container))]
		succeeded := seen[t.ID] || (a != nil && (a.Online || a.Assigned != 0)) ||
			t.StoppedReason == ReasonScaleIn || (t.ExitCode != nil && *t.ExitCode == 0 && t.StoppedReason != ReasonBootTimeout)
		failed := !succeeded && (t.StoppedReason == ReasonBootTimeout || t.StopCode == "TaskFailedToStart" ||
			(t.ExitCode != nil && *t.ExitCode != 0))
		switch {
		case succeeded:
			return streak, until
		case failed:
			if streak == 0 {
				at := t.StoppedAt
				if at.IsZero() {
					at = t.CreatedAt
				}
				until = at.Add(p.BootTimeout)
			}
			streak++
		}
		// neither (still starting, or stopped without evidence): skipped
	}
	return streak, until
}

// FormatRequests is the azp-entrypoint:request tag value: request ids separated by spaces.
func FormatRequests(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, " ")
}

// ParseRequests reads the tag back.
func ParseRequests(v string) []uint64 {
	var out []uint64
	for _, f := range strings.Fields(v) {
		if n, err := strconv.ParseUint(f, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// ecsAgentName is the name `run` gives the agent of a task (internal/ecs.AgentName).
func ecsAgentName(prefix, taskID, container string) string {
	return ecs.AgentName(prefix, taskID, container)
}

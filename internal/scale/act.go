package scale

// Acting on a plan: launches, stops, the persistent scale-in protocol, the placeholder and metrics.

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/google/uuid"

	"github.com/azp-entrypoint/azp-entrypoint/internal/metrics"
)

func (s *Scaler) act(ctx context.Context, plan Plan, in Inputs) {
	if s.c.Scale.Placeholder {
		s.ensurePlaceholder(ctx, in.Agents)
	}
	// Ghosts: marked on one pass, deleted on the next if still ghosts.
	ghosts := map[int]bool{}
	for _, g := range plan.Ghosts {
		ghosts[g.ID] = true
		if !s.markedGhosts[g.ID] {
			continue
		}
		if err := s.c.AzDO.DeleteAgent(ctx, s.poolID, g.ID); err != nil {
			s.log.Warn("could not delete a ghost agent", "agent", g.Name, "error", err.Error())
			continue
		}
		s.counters.pruned++
		s.log.Info("deleted ghost agent: offline and its task is gone", "agent", g.Name, "agent_id", g.ID)
		delete(ghosts, g.ID)
	}
	s.markedGhosts = ghosts
	// Boot timeouts, marked then swept, so that an agent seen at the next pass is spared.
	boot := map[string]bool{}
	for _, ta := range plan.BootTimedOut {
		boot[ta.Task.ID] = true
		if !s.markedBoot[ta.Task.ID] || !s.stillBooting(ctx, ta.Task) {
			continue
		}
		if s.stopTask(ctx, ta.Task, ReasonBootTimeout) {
			s.counters.failed++
			s.log.Warn("stopped a task whose agent was not online within the boot timeout; counted as a failed launch",
				"task", ta.Task.ID, "agent", agentName(s.profile, ta.Task.ID), "boot_timeout", s.profile.BootTimeout.String())
		}
	}
	s.markedBoot = boot
	if s.profile.Mode == ModePersistent {
		s.persistent(ctx, plan)
	}
	if plan.Paused && !s.pausedShown {
		s.log.Warn("launching paused: too many failed launches in a row (bad image, secret or settings?)", "failed_in_a_row", plan.FailedStreak,
			"until", plan.PausedUntil.UTC().Format(time.RFC3339))
	}
	s.pausedShown = plan.Paused
	if plan.Launch > 0 {
		s.launch(ctx, plan)
	} else if plan.Matched > 0 {
		s.log.Debug("not launching", "why", plan.Why)
	}
}

func agentName(p Profile, taskID string) string {
	return strings.ToLower(ecsAgentName(p.Prefix, taskID, p.Container))
}

// persistent runs the race-free scale-in: disable the agent, re-read its assigned request, stop
// the task only if it has none, else enable the agent again. Agents a crashed scaler left
// disabled are enabled again (after a pass of grace, so that an entrypoint's own drain is not
// undone).
func (s *Scaler) persistent(ctx context.Context, plan Plan) {
	off := map[string]bool{}
	for _, ta := range plan.Disabled {
		off[ta.Task.ID] = true
		if !s.markedOff[ta.Task.ID] || ta.Agent == nil {
			continue
		}
		if err := s.c.AzDO.SetEnabled(ctx, s.poolID, ta.Agent.ID, true); err == nil {
			s.log.Info("enabled an agent left disabled by an interrupted scale-in", "agent", ta.Agent.Name)
		}
	}
	s.markedOff = off
	for _, ta := range plan.ScaleIn {
		a := ta.Agent
		if err := s.c.AzDO.SetEnabled(ctx, s.poolID, a.ID, false); err != nil {
			s.log.Warn("scale-in: could not disable the agent; leaving it", "agent", a.Name, "error", err.Error())
			continue
		}
		cur, err := s.c.AzDO.Agent(ctx, s.poolID, a.Name)
		if err != nil || cur == nil || cur.AssignedRequest != nil {
			why := "it was assigned a job meanwhile"
			if err != nil {
				why = "its state could not be read again: " + err.Error()
			}
			if e := s.c.AzDO.SetEnabled(ctx, s.poolID, a.ID, true); e != nil {
				s.log.Warn("scale-in: could not enable the agent again; the next pass retries", "agent", a.Name, "error", e.Error())
			}
			s.log.Info("scale-in cancelled: "+why, "agent", a.Name)
			continue
		}
		if s.stopTask(ctx, ta.Task, ReasonScaleIn) {
			s.log.Info("scaled in an idle agent: disabled, no job assigned, task stopped (its entrypoint deregisters it)", "agent", a.Name, "task", ta.Task.ID)
		}
	}
}

func (s *Scaler) stopTask(ctx context.Context, t Task, reason string) bool {
	_, err := s.c.ECS.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(s.c.Scale.Cluster), Task: aws.String(t.ARN), Reason: aws.String(reason)})
	if err != nil {
		s.log.Warn("could not stop task", "task", t.ID, "error", ecsError(err, "stop task").Error())
		return false
	}
	s.counters.stopped++
	return true
}

// launch starts plan.Launch tasks in RunTask calls of at most 10, each with a client token (the
// SDK's retries of one call reuse it, so a retried call never starts tasks twice).
func (s *Scaler) launch(ctx context.Context, plan Plan) {
	sc := s.c.Scale
	env := []types.KeyValuePair{
		{Name: aws.String("AZP_AGENT_NAME_PREFIX"), Value: aws.String(s.profile.Prefix)},
		{Name: aws.String("AZP_ECS_TASK_PROTECTION"), Value: aws.String("false")},
	}
	if s.profile.Mode == ModeOnce {
		env = append(env, types.KeyValuePair{Name: aws.String("AZP_ONCE"), Value: aws.String("true")},
			types.KeyValuePair{Name: aws.String("AZP_IDLE_TIMEOUT"), Value: aws.String(sc.IdleTimeout.String())})
	} else {
		env = append(env, types.KeyValuePair{Name: aws.String("AZP_ONCE"), Value: aws.String("false")})
	}
	for _, n := range s.profile.Caps.Names() {
		if strings.HasPrefix(n, "Agent.") {
			continue // reported by the agent itself
		}
		env = append(env, types.KeyValuePair{Name: aws.String(n), Value: aws.String(s.profile.Caps[n])})
	}
	var strategy []types.CapacityProviderStrategyItem
	for _, cp := range sc.CapacityProviders {
		strategy = append(strategy, types.CapacityProviderStrategyItem{CapacityProvider: aws.String(cp.Name), Weight: int32(cp.Weight), Base: int32(cp.Base)})
	}
	public := types.AssignPublicIpDisabled
	if sc.PublicIP {
		public = types.AssignPublicIpEnabled
	}
	left := plan.Launch
	forIDs := plan.LaunchFor
	for left > 0 && ctx.Err() == nil {
		n := min(left, 10)
		tags := []types.Tag{{Key: aws.String(TagScaler), Value: aws.String(s.name)}}
		var ids []uint64
		if s.profile.Mode == ModeOnce && len(forIDs) > 0 {
			ids = forIDs[:min(n, len(forIDs))]
			forIDs = forIDs[len(ids):]
			tags = append(tags, types.Tag{Key: aws.String(TagRequest), Value: aws.String(FormatRequests(ids))})
		}
		out, err := s.c.ECS.RunTask(ctx, &ecs.RunTaskInput{
			Cluster: aws.String(sc.Cluster), TaskDefinition: aws.String(sc.TaskDefinition), Count: aws.Int32(int32(n)),
			StartedBy: aws.String(StartedBy), ClientToken: aws.String(uuid.NewString()), Tags: tags,
			CapacityProviderStrategy: strategy,
			NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
				Subnets: sc.Subnets, SecurityGroups: sc.SecurityGroups, AssignPublicIp: public}},
			Overrides: &types.TaskOverride{ContainerOverrides: []types.ContainerOverride{{Name: aws.String(sc.Container), Environment: env}}},
		})
		if err != nil {
			s.log.Error("RunTask failed", "count", n, "error", ecsError(err, "run task").Error())
			s.counters.failed += n
			return
		}
		var started []string
		for _, t := range out.Tasks {
			a := aws.ToString(t.TaskArn)
			started = append(started, a[strings.LastIndex(a, "/")+1:])
		}
		sort.Strings(started)
		s.counters.launched += len(out.Tasks)
		s.log.Info("launched agent tasks", "count", len(out.Tasks), "tasks", strings.Join(started, ","), "for_requests", FormatRequests(ids), "why", plan.Why)
		for _, f := range out.Failures {
			s.counters.failed++
			s.log.Warn("RunTask could not place a task", "reason", aws.ToString(f.Reason), "detail", aws.ToString(f.Detail))
		}
		left -= n
	}
}

// ensurePlaceholder registers <prefix>placeholder, offline, with the profile's capabilities, when
// the pool lacks it.
func (s *Scaler) ensurePlaceholder(ctx context.Context, agents []Agent) {
	name := PlaceholderName(s.profile.Prefix)
	for _, a := range agents {
		if strings.EqualFold(a.Name, name) {
			return
		}
	}
	caps := map[string]string{}
	for k, v := range s.profile.Caps {
		caps[k] = v
	}
	caps["Agent.Name"] = name
	if err := s.c.AzDO.AddOfflineAgent(ctx, s.poolID, name, s.profile.Caps["Agent.Version"], caps); err != nil {
		s.log.Warn("could not register the placeholder agent; jobs may fail with no agent found while no agent is online", "agent", name, "error", err.Error())
		return
	}
	s.log.Info("registered the placeholder agent (offline), so that jobs queue while no agent is online", "agent", name)
}

// emit writes the contract's scale metrics at most once a minute and on every launch.
func (s *Scaler) emit(now time.Time, plan *Plan, launched bool) {
	if s.c.Metrics == nil || (!launched && now.Sub(s.lastMetrics) < time.Minute) {
		return
	}
	s.lastMetrics = now
	dims := []metrics.Dimension{{Name: "Pool", Value: s.c.Settings.Pool}, {Name: "Scaler", Value: s.name}}
	throttled := 0
	if s.c.Rate != nil {
		throttled = s.c.Rate.TakeThrottled()
	}
	ms := []metrics.Metric{
		{Name: "TasksLaunched", Unit: metrics.Count, Value: float64(s.counters.launched)},
		{Name: "FailedLaunches", Unit: metrics.Count, Value: float64(s.counters.failed)},
		{Name: "AgentsPruned", Unit: metrics.Count, Value: float64(s.counters.pruned)},
		{Name: "TasksStopped", Unit: metrics.Count, Value: float64(s.counters.stopped)},
		{Name: "ThrottledRequests", Unit: metrics.Count, Value: float64(throttled)},
	}
	if plan != nil {
		ms = append(ms,
			metrics.Metric{Name: "PendingJobs", Unit: metrics.Count, Value: float64(plan.Matched)},
			metrics.Metric{Name: "OldestPendingAge", Unit: metrics.Seconds, Value: plan.OldestPending.Seconds()},
			metrics.Metric{Name: "StartingTasks", Unit: metrics.Count, Value: float64(plan.Starting)},
			metrics.Metric{Name: "IdleAgents", Unit: metrics.Count, Value: float64(plan.Idle)},
			metrics.Metric{Name: "BusyAgents", Unit: metrics.Count, Value: float64(plan.Busy)},
			metrics.Metric{Name: "LaunchingPaused", Unit: metrics.Count, Value: b2f(plan.Paused)},
		)
	}
	if err := s.c.Metrics.Put(dims, ms...); err != nil {
		s.log.Debug("metrics", "error", err.Error())
	}
	s.counters = counters{}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func derefInt(p *int) any {
	if p == nil {
		return "none"
	}
	return *p
}

// stillBooting asks the server once more, right before a boot-timeout stop, whether the task's
// agent is still not online and has no job: the plan is a snapshot, and an agent that came online
// and took a job since must never be stopped. A failed read says no (nothing is stopped on it).
func (s *Scaler) stillBooting(ctx context.Context, t Task) bool {
	a, err := s.c.AzDO.Agent(ctx, s.poolID, agentName(s.profile, t.ID))
	if err != nil {
		s.log.Warn("could not confirm a boot timeout with the server; the task is left running this pass", "task", t.ID, "error", err.Error())
		return false
	}
	return a == nil || (!a.Online() && a.AssignedRequest == nil)
}

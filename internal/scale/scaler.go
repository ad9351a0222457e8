package scale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
	"github.com/google/uuid"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/metrics"
)

// Names the scaler puts on its tasks (contract, "Scaling").
const (
	StartedBy  = "azp-scale"
	TagScaler  = "azp-entrypoint:scaler"
	TagRequest = "azp-entrypoint:request"
)

// Config is what a Scaler needs.
type Config struct {
	Settings *config.Settings
	Scale    *config.ScaleSettings
	AzDO     *azdo.Client
	ECS      *ecs.Client
	Logger   *slog.Logger
	Metrics  *metrics.Writer
	// Rate observes the Azure DevOps and ECS HTTP traffic (429s, X-RateLimit-*, throttling); it
	// must wrap the transports of both clients. Nil: none observed.
	Rate *RateObserver
	// StateDir is where the pass time is recorded for `health` (AZP_STATE_DIR).
	StateDir string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Scaler is the loop of `azp-entrypoint scale`.
type Scaler struct {
	c       Config
	log     *slog.Logger
	profile Profile
	standby Standby
	name    string // the azp-entrypoint:scaler tag value
	family  string
	poolID  int

	// Marks of the previous pass (mark, then sweep on the next pass).
	markedGhosts map[int]bool
	markedBoot   map[string]bool
	markedOff    map[string]bool
	seenOnline   map[string]bool

	lastMetrics time.Time
	counters    counters
	pausedShown bool
	// pausedMetric is the breaker state of the last record: a change is written at once.
	pausedMetric bool
	started      time.Time
	countedFail  map[string]bool
}

type counters struct{ launched, failed, pruned, stopped int }

// New resolves the pool and the task definition (with its container) and builds the profile.
// A cluster or task definition that does not exist is a configuration error (exit 2); an ECS
// refusal an authorisation error (exit 3).
func New(ctx context.Context, c Config) (*Scaler, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	sc := c.Scale
	s := &Scaler{c: c, log: c.Logger, started: c.Now(), countedFail: map[string]bool{}, markedGhosts: map[int]bool{}, markedBoot: map[string]bool{}, markedOff: map[string]bool{}, seenOnline: map[string]bool{}}
	pool, err := c.AzDO.Pool(ctx, c.Settings.Pool)
	if err != nil {
		return nil, err
	}
	s.poolID = pool.ID
	td, err := CheckECS(ctx, c.ECS, sc)
	if err != nil {
		return nil, err
	}
	s.family = aws.ToString(td.Family)
	arch := "X64"
	if td.RuntimePlatform != nil && td.RuntimePlatform.CpuArchitecture == types.CPUArchitectureArm64 {
		arch = "ARM64"
	}
	caps, err := ParseCapabilities(sc.Capabilities)
	if err != nil {
		return nil, exit.Config(fmt.Errorf("AZP_SCALE_CAPABILITIES = %q: %w", sc.Capabilities, err))
	}
	caps["Agent.OS"] = "Linux"
	caps["Agent.OSArchitecture"] = arch
	version := c.Settings.AgentVersion
	if version == "" {
		platform := c.Settings.AgentPlatform
		if platform == "" {
			platform = "linux-x64"
			if arch == "ARM64" {
				platform = "linux-arm64"
			}
		}
		pkgs, err := c.AzDO.Packages(ctx, platform, 1)
		if err != nil {
			return nil, err
		}
		if len(pkgs) == 0 {
			return nil, exit.Runtime(fmt.Errorf("the server lists no agent package for %s, so the launched agents' Agent.Version is unknown; set AZP_AGENT_VERSION", platform))
		}
		version = pkgs[0].Version
	}
	caps["Agent.Version"] = version
	s.standby, err = ParseStandby(sc.Standby, sc.Timezone)
	if err != nil {
		return nil, exit.Config(fmt.Errorf("AZP_SCALE_STANDBY = %q: %w", sc.Standby, err))
	}
	s.profile = Profile{Prefix: c.Settings.AgentNamePrefix, Container: sc.Container, Caps: caps, Mode: sc.Mode, Max: sc.Max,
		BootTimeout: sc.BootTimeout, MaxFailed: sc.MaxFailedLaunches}
	s.name = tagValue(pool.Name + "/" + s.family)
	s.log.Info("scaler ready", "pool", pool.Name, "scaler", s.name, "cluster", sc.Cluster, "task_definition", aws.ToString(td.TaskDefinitionArn),
		"container", sc.Container, "mode", sc.Mode, "max", sc.Max, "capabilities", strings.Join(caps.Names(), ","), "agent_version", version)
	return s, nil
}

var tagChars = regexp.MustCompile(`[^\p{L}\p{N} _.:/=+\-@]`)

// tagValue keeps the characters ECS allows in tag values (letters, numbers, spaces, _ . : / = + - @).
func tagValue(v string) string {
	v = tagChars.ReplaceAllString(v, "_")
	if len(v) > 256 {
		v = v[:256]
	}
	return v
}

// CheckECS checks the cluster and the task definition with its container, as `check` and the
// start of `scale` do. It returns the task definition.
func CheckECS(ctx context.Context, client *ecs.Client, sc *config.ScaleSettings) (*types.TaskDefinition, error) {
	cl, err := client.DescribeClusters(ctx, &ecs.DescribeClustersInput{Clusters: []string{sc.Cluster}})
	if err != nil {
		return nil, ecsError(err, "describe cluster "+strconv.Quote(sc.Cluster))
	}
	if len(cl.Clusters) == 0 || aws.ToString(cl.Clusters[0].Status) != "ACTIVE" {
		return nil, exit.Config(fmt.Errorf("AZP_SCALE_CLUSTER = %q: no such active ECS cluster in this account and region (check the name and AWS_REGION)", sc.Cluster))
	}
	td, err := client.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(sc.TaskDefinition)})
	if err != nil {
		var ce *types.ClientException
		if errors.As(err, &ce) {
			return nil, exit.Config(fmt.Errorf("AZP_SCALE_TASK_DEFINITION = %q: ECS cannot describe it (%s); check the family, revision or ARN", sc.TaskDefinition, ce.ErrorMessage()))
		}
		return nil, ecsError(err, "describe task definition "+strconv.Quote(sc.TaskDefinition))
	}
	var names []string
	for _, cd := range td.TaskDefinition.ContainerDefinitions {
		if aws.ToString(cd.Name) == sc.Container {
			return td.TaskDefinition, nil
		}
		names = append(names, aws.ToString(cd.Name))
	}
	return nil, exit.Config(fmt.Errorf("AZP_SCALE_CONTAINER = %q: task definition %s has no such container (it has %s)", sc.Container, aws.ToString(td.TaskDefinition.TaskDefinitionArn), strings.Join(names, ", ")))
}

// ecsError marks an ECS failure with its exit kind: refusals (access denied, bad credentials)
// are authorisation errors, anything else a runtime error.
func ecsError(err error, op string) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "SignatureDoesNotMatch", "ExpiredTokenException", "InvalidClientTokenId":
			return exit.Auth(fmt.Errorf("%s: ECS refused (%s: %s); check the scaler's task role (ecs:RunTask, ecs:StopTask, ecs:DescribeTasks, ecs:ListTasks, ecs:DescribeTaskDefinition, ecs:DescribeClusters, ecs:TagResource, iam:PassRole)", op, ae.ErrorCode(), ae.ErrorMessage()))
		}
	}
	return exit.Runtime(fmt.Errorf("%s: %w", op, err))
}

// Run loops until ctx ends, then returns nil: a stop never stops agent tasks.
func (s *Scaler) Run(ctx context.Context) error {
	for {
		busy := s.Pass(ctx)
		if ctx.Err() != nil {
			s.log.Info("scaler stopping; agent tasks are left running")
			return nil
		}
		wait := s.c.Scale.Interval
		if !busy {
			wait = max(wait, min(6*wait, 60*time.Second)) // slow when idle
		}
		if s.c.Rate != nil {
			wait = max(wait, s.c.Rate.Advice())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.log.Info("scaler stopping; agent tasks are left running")
			return nil
		case <-t.C:
		}
	}
}

// observation is one pass's reads.
type observation struct {
	requests []azdo.PoolRequest
	agents   []azdo.Agent
	tasks    []Task
	parallel *Parallel
}

// Pass runs one observe-decide-act pass and reports whether anything was pending or starting
// (fast polling). A failed read freezes decisions for the pass.
func (s *Scaler) Pass(ctx context.Context) bool {
	now := s.c.Now()
	obs, err := s.observe(ctx)
	writeHealth(s.c.StateDir, now)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("a read failed; no decisions this pass", "error", err.Error())
		}
		s.emit(now, nil, false)
		return true
	}
	in := Inputs{Now: now, Tasks: obs.tasks, Parallel: obs.parallel, Standby: s.standby.At(now), SeenOnline: s.seenOnline}
	for _, r := range obs.requests {
		in.Requests = append(in.Requests, Request{ID: r.ID, Demands: r.Demands, QueueTime: r.QueueTime, Pending: r.Pending()})
	}
	for _, a := range obs.agents {
		ag := Agent{ID: a.ID, Name: a.Name, Online: a.Online(), Enabled: a.Enabled, StatusChangedOn: a.StatusChangedOn}
		if a.AssignedRequest != nil {
			ag.Assigned = a.AssignedRequest.ID
			if ag.Assigned == 0 {
				ag.Assigned = 1 // assigned, id unknown
			}
		}
		in.Agents = append(in.Agents, ag)
	}
	plan := Decide(s.profile, in)
	s.remember(in)
	s.act(ctx, plan, in)
	launched := plan.Launch > 0
	s.emit(now, &plan, launched || plan.Paused != s.pausedMetric)
	s.pausedMetric = plan.Paused
	return plan.Matched > 0 || plan.Starting > 0 || len(plan.ScaleIn) > 0 || launched
}

func (s *Scaler) observe(ctx context.Context) (*observation, error) {
	o := &observation{}
	var err error
	if o.requests, err = s.c.AzDO.UnfinishedRequests(ctx, s.poolID); err != nil {
		return nil, err
	}
	if o.agents, err = s.c.AzDO.Agents(ctx, s.poolID); err != nil {
		return nil, err
	}
	pj, err := s.c.AzDO.ParallelJobs(ctx)
	switch {
	case errors.Is(err, azdo.ErrNotFound):
		// No resourceusage: a server without parallel-job accounting; no cap.
	case err != nil:
		return nil, err
	default:
		o.parallel = &Parallel{Total: pj.Total, Used: pj.Used}
	}
	if o.tasks, err = s.listTasks(ctx); err != nil {
		return nil, err
	}
	return o, nil
}

// listTasks finds this scaler's tasks: those with desiredStatus RUNNING by startedBy (ListTasks
// allows startedBy only as the sole filter), those on their way out or stopped in the last hour by
// family and desiredStatus STOPPED; then DescribeTasks (with tags) keeps those whose startedBy and
// scaler tag are ours.
func (s *Scaler) listTasks(ctx context.Context) ([]Task, error) {
	cluster := aws.String(s.c.Scale.Cluster)
	var arns []string
	for _, in := range []*ecs.ListTasksInput{
		{Cluster: cluster, StartedBy: aws.String(StartedBy)},
		{Cluster: cluster, Family: aws.String(s.family), DesiredStatus: types.DesiredStatusStopped},
	} {
		p := ecs.NewListTasksPaginator(s.c.ECS, in)
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, ecsError(err, "list tasks")
			}
			arns = append(arns, page.TaskArns...)
		}
	}
	var out []Task
	for i := 0; i < len(arns); i += 100 {
		d, err := s.c.ECS.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: cluster, Tasks: arns[i:min(i+100, len(arns))], Include: []types.TaskField{types.TaskFieldTags}})
		if err != nil {
			return nil, ecsError(err, "describe tasks")
		}
		for _, t := range d.Tasks {
			if aws.ToString(t.StartedBy) != StartedBy {
				continue
			}
			tags := map[string]string{}
			for _, g := range t.Tags {
				tags[aws.ToString(g.Key)] = aws.ToString(g.Value)
			}
			if tags[TagScaler] != s.name {
				continue
			}
			arn := aws.ToString(t.TaskArn)
			tk := Task{ID: arn[strings.LastIndex(arn, "/")+1:], ARN: arn, LastStatus: aws.ToString(t.LastStatus), DesiredStatus: aws.ToString(t.DesiredStatus),
				CreatedAt: aws.ToTime(t.CreatedAt), StopCode: string(t.StopCode), StoppedReason: aws.ToString(t.StoppedReason),
				Requests: ParseRequests(tags[TagRequest])}
			if t.StoppedAt != nil {
				tk.StoppedAt = *t.StoppedAt
			} else if t.StoppingAt != nil {
				tk.StoppedAt = *t.StoppingAt
			}
			for _, c := range t.Containers {
				if aws.ToString(c.Name) == s.c.Scale.Container && c.ExitCode != nil {
					code := int(*c.ExitCode)
					tk.ExitCode = &code
				}
			}
			out = append(out, tk)
		}
	}
	return out, nil
}

// remember updates the marks kept between passes.
func (s *Scaler) remember(in Inputs) {
	online := map[string]bool{}
	for _, a := range in.Agents {
		if a.Online {
			online[strings.ToLower(a.Name)] = true
		}
	}
	active := map[string]bool{}
	for _, t := range in.Tasks {
		active[t.ID] = true
		if online[strings.ToLower(agentName(s.profile, t.ID))] {
			s.seenOnline[t.ID] = true
		}
	}
	for id := range s.seenOnline {
		if !active[id] {
			delete(s.seenOnline, id) // forgotten by ECS: forget it too
		}
	}
	// Count for the FailedLaunches metric the tasks of this run that died before their agent was
	// online (boot-timeout stops are counted when the scaler stops them).
	for _, t := range in.Tasks {
		if t.LastStatus != "STOPPED" || s.countedFail[t.ID] || s.seenOnline[t.ID] || t.StoppedReason == ReasonBootTimeout || t.StoppedAt.Before(s.started) {
			continue
		}
		if t.StopCode == "TaskFailedToStart" || (t.ExitCode != nil && *t.ExitCode != 0 && t.StoppedReason != ReasonScaleIn) {
			s.countedFail[t.ID] = true
			s.counters.failed++
			s.log.Warn("a launched task stopped before its agent was online; counted as a failed launch", "task", t.ID,
				"stop_code", t.StopCode, "reason", t.StoppedReason, "exit_code", fmt.Sprint(derefInt(t.ExitCode)))
		}
	}
	for id := range s.countedFail {
		if !active[id] {
			delete(s.countedFail, id)
		}
	}
}

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
		if !s.markedBoot[ta.Task.ID] {
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

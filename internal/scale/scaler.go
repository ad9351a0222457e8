package scale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

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
		// Fast while anything is pending or starting. When idle, the full pass (agents, parallel
		// jobs, ECS) slows down, but the job queue alone is still peeked at the fast interval, so
		// that a burst arriving at an idle scaler is seen within one interval (reaction time,
		// bench/), at one Azure DevOps request and no ECS call per peek.
		slow := time.Time{}
		if !busy {
			slow = s.c.Now().Add(min(6*s.c.Scale.Interval, 60*time.Second))
		}
		for {
			if !s.sleep(ctx) {
				s.log.Info("scaler stopping; agent tasks are left running")
				return nil
			}
			if busy || !s.c.Now().Before(slow) || s.demandWaiting(ctx) {
				break
			}
		}
	}
}

// sleep waits one poll interval (longer when the rate observer advises it); false on a stop.
func (s *Scaler) sleep(ctx context.Context) bool {
	wait := s.c.Scale.Interval
	if s.c.Rate != nil {
		wait = max(wait, s.c.Rate.Advice())
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// demandWaiting peeks at the job queue: is a request pending that this profile serves? A failed
// read says no; the next full pass reports it.
func (s *Scaler) demandWaiting(ctx context.Context) bool {
	reqs, err := s.c.AzDO.UnfinishedRequests(ctx, s.poolID)
	if err != nil {
		return false
	}
	for _, r := range reqs {
		if r.Pending() && s.profile.Caps.Meets(r.Demands) {
			return true
		}
	}
	return false
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

// Package ecssim is a local Amazon ECS control plane: an HTTP server speaking the ECS API's wire
// protocol (awsJson1.1, X-Amz-Target "AmazonEC2ContainerServiceV20141113.<Operation>", SigV4
// checked) for the operations the scaler uses: RunTask, StopTask, DescribeTasks, ListTasks,
// DescribeTaskDefinition, DescribeClusters and RegisterTaskDefinition. The real aws-sdk-go-v2 ecs
// client talks to it unchanged (BaseEndpoint pointed at it).
//
// A task's essential container is started by a pluggable Launcher: ExecLauncher runs the real
// azp-entrypoint as PID 1 of its own PID namespace with the container's environment and its own
// task metadata v4 and task-protection endpoints (internal/ecs/ecstest, standalone: protection
// answers TASK_NOT_VALID). Status moves PROVISIONING → PENDING → RUNNING → STOPPING →
// DEPROVISIONING → STOPPED with configurable delays; StopTask honours the container's stopTimeout
// (SIGTERM, then SIGKILL). Faults can be injected: RunTask capacity failures (failures[]),
// throttling (400 ThrottlingException) and containers that die at boot.
//
// Every behaviour cites the ECS API reference (docs.aws.amazon.com/AmazonECS/latest/APIReference/
// API_<Operation>.html) or the developer guide. It is test and demo tooling; the product binary
// never imports it, and it only listens on the address it is given (loopback by default).
package ecssim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Target prefix of the ECS API's operations (the service's Smithy shape name).
const targetPrefix = "AmazonEC2ContainerServiceV20141113."

// Task statuses (developer guide, "Amazon ECS task lifecycle").
const (
	StatusProvisioning   = "PROVISIONING"
	StatusPending        = "PENDING"
	StatusRunning        = "RUNNING"
	StatusStopping       = "STOPPING"
	StatusDeprovisioning = "DEPROVISIONING"
	StatusStopped        = "STOPPED"
)

// CapacityReason is the failures[] reason RunTask gives when Fargate has no capacity
// (API_Failure, and the developer guide's "API failure reasons").
const CapacityReason = "Capacity is unavailable at this time. Please try again later or in a different availability zone"

// Delays of the status transitions.
type Delays struct {
	Provisioning   time.Duration // PROVISIONING → PENDING (ENI attachment)
	Pending        time.Duration // PENDING → RUNNING (image pull)
	Deprovisioning time.Duration // DEPROVISIONING → STOPPED (ENI detachment)
}

// Options configure a Server.
type Options struct {
	Addr    string // default 127.0.0.1:0
	Region  string // default eu-west-1
	Account string // default 123456789012
	// Keys are the accepted access keys: access key id → secret access key. Default one pair,
	// DefaultAccessKeyID / DefaultSecretAccessKey.
	Keys     map[string]string
	Clusters []string // created at start; default "azp-agents"
	Launcher Launcher // default: a FakeProcess per task
	Delays   Delays
	// KeepStopped is how long STOPPED tasks stay visible (ECS: "at least one hour"). Default 1h.
	KeepStopped time.Duration
	Logger      *slog.Logger
	// OnChange, when set, is called after every task status change with every task's view, under
	// the simulator's lock (so calls are ordered and see one consistent instant). It must not call
	// back into the Server.
	OnChange func(tasks []TaskView)
}

// Default credentials accepted when Options.Keys is empty.
const (
	DefaultAccessKeyID     = "AKIAECSSIMEXAMPLE001"
	DefaultSecretAccessKey = "ecssim/example/secret/access/key/00000000"
)

// TaskView is the simulator's view of a task, for tests.
type TaskView struct {
	ARN, ID, Cluster, Family    string
	StartedBy                   string
	LastStatus, DesiredStatus   string
	StopCode, StoppedReason     string
	Tags                        map[string]string
	Env                         map[string]string
	ExitCode                    *int
	CreatedAt, StartedAt        time.Time
	StoppedAt                   time.Time
	CapacityProvider, ClientTok string
}

// Server is the local ECS.
type Server struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	clusters  map[string]*cluster // by name
	taskDefs  map[string][]*TaskDefinition
	tokens    map[string]*tokenEntry
	tasks     []*task
	byARN     map[string]*task
	throttle  int
	capacity  int
	bootDeath []map[string]string
	calls     map[string]int
	maxActive map[string]int // startedBy → most tasks not STOPPED at any instant

	srv     *http.Server
	baseURL string
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

type cluster struct {
	name, arn string
}

type tokenEntry struct {
	req  string // canonical request, to tell a retry from a different call
	resp []byte
	at   time.Time
}

type task struct {
	s          *Server
	arn, id    string
	cluster    *cluster
	td         *TaskDefinition
	container  string
	startedBy  string
	group      string
	tags       []Tag
	overrides  *taskOverride
	env        map[string]string
	command    []string
	capProv    string
	launchType string
	clientTok  string
	subnet     string

	lastStatus, desiredStatus string
	version                   int64
	createdAt, pullStartedAt  time.Time
	pullStoppedAt, startedAt  time.Time
	stoppingAt, execStoppedAt time.Time
	stoppedAt                 time.Time
	stopCode, stoppedReason   string
	exitCode                  *int
	containerReason           string
	stopReq                   chan struct{}
	stopOnce                  sync.Once
	bootEnv                   map[string]string
	proc                      Process
}

// New returns a Server with defaults filled in; Start it.
func New(opts Options) *Server {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Region == "" {
		opts.Region = "eu-west-1"
	}
	if opts.Account == "" {
		opts.Account = "123456789012"
	}
	if len(opts.Keys) == 0 {
		opts.Keys = map[string]string{DefaultAccessKeyID: DefaultSecretAccessKey}
	}
	if len(opts.Clusters) == 0 {
		opts.Clusters = []string{"azp-agents"}
	}
	if opts.KeepStopped <= 0 {
		opts.KeepStopped = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Launcher == nil {
		opts.Launcher = LauncherFunc(func(_ context.Context, spec LaunchSpec) (Process, error) { return NewFakeProcess(spec), nil })
	}
	s := &Server{opts: opts, log: opts.Logger, clusters: map[string]*cluster{}, taskDefs: map[string][]*TaskDefinition{},
		tokens: map[string]*tokenEntry{}, byARN: map[string]*task{}, calls: map[string]int{}, maxActive: map[string]int{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, c := range opts.Clusters {
		s.clusters[c] = &cluster{name: c, arn: s.arn("cluster/" + c)}
	}
	return s
}

func (s *Server) arn(res string) string {
	return "arn:aws:ecs:" + s.opts.Region + ":" + s.opts.Account + ":" + res
}

// Start listens on Options.Addr and returns the endpoint URL (the client's BaseEndpoint).
func (s *Server) Start() (string, error) {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return "", fmt.Errorf("ecssim: listen on %s: %w", s.opts.Addr, err)
	}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	s.baseURL = "http://" + ln.Addr().String()
	go s.srv.Serve(ln)
	return s.baseURL, nil
}

// URL is the endpoint URL.
func (s *Server) URL() string { return s.baseURL }

// Region is the simulated region.
func (s *Server) Region() string { return s.opts.Region }

// Close stops the server and kills every container still running (as deleting a cluster's
// infrastructure would); it waits for them to be reaped.
func (s *Server) Close() error {
	s.cancel()
	var err error
	if s.srv != nil {
		err = s.srv.Close()
	}
	s.mu.Lock()
	for _, t := range s.tasks {
		t.requestStop()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// RegisterTaskDefinition registers a revision of a family and returns it.
func (s *Server) RegisterTaskDefinition(td TaskDefinition) (TaskDefinition, error) {
	if td.Family == "" || len(td.ContainerDefinitions) == 0 {
		return TaskDefinition{}, errors.New("ecssim: a task definition needs a family and at least one container")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := td
	c.Revision = len(s.taskDefs[td.Family]) + 1
	c.TaskDefinitionArn = s.arn(fmt.Sprintf("task-definition/%s:%d", c.Family, c.Revision))
	c.Status = "ACTIVE"
	c.RegisteredAt = ts(time.Now())
	if c.NetworkMode == "" {
		c.NetworkMode = "awsvpc"
	}
	if len(c.RequiresCompatibilities) == 0 {
		c.RequiresCompatibilities = []string{"FARGATE"}
	}
	s.taskDefs[c.Family] = append(s.taskDefs[c.Family], &c)
	return c, nil
}

// ---- fault injection ----

// Throttle makes the next n API calls fail with 400 ThrottlingException "Rate exceeded", as the
// ECS API does when a caller exceeds its request-rate quota (developer guide, "Request throttling
// for the Amazon ECS API").
func (s *Server) Throttle(n int) { s.mu.Lock(); s.throttle += n; s.mu.Unlock() }

// FailCapacity makes the next n task placements fail: RunTask returns them in failures[] with
// CapacityReason instead of starting them (API_RunTask: "failures").
func (s *Server) FailCapacity(n int) { s.mu.Lock(); s.capacity += n; s.mu.Unlock() }

// FailBoot makes the next n launched tasks start with env merged into their container's
// environment (for example AZP_POOL of a pool that does not exist), so that their real
// entrypoint fails at boot and the essential container exits.
func (s *Server) FailBoot(n int, env map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.bootDeath = append(s.bootDeath, env)
	}
}

// Calls counts the API calls per operation that were served (not throttled, signed correctly).
func (s *Server) Calls(op string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls[op] }

// MaxActive is the most tasks with this startedBy that were not STOPPED at any one instant.
func (s *Server) MaxActive(startedBy string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxActive[startedBy]
}

// Tasks lists every task, oldest first.
func (s *Server) Tasks() []TaskView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewsLocked()
}

func (s *Server) viewsLocked() []TaskView {
	out := make([]TaskView, 0, len(s.tasks))
	for _, t := range s.tasks {
		out = append(out, t.view())
	}
	return out
}

func (t *task) view() TaskView {
	tags := map[string]string{}
	for _, g := range t.tags {
		tags[g.Key] = g.Value
	}
	env := map[string]string{}
	for k, v := range t.env {
		env[k] = v
	}
	return TaskView{ARN: t.arn, ID: t.id, Cluster: t.cluster.name, Family: t.td.Family, StartedBy: t.startedBy,
		LastStatus: t.lastStatus, DesiredStatus: t.desiredStatus, StopCode: t.stopCode, StoppedReason: t.stoppedReason,
		Tags: tags, Env: env, ExitCode: t.exitCode, CreatedAt: t.createdAt, StartedAt: t.startedAt, StoppedAt: t.stoppedAt,
		CapacityProvider: t.capProv, ClientTok: t.clientTok}
}

// StopTaskNow stops a task as StopTask does (for tests that play another actor).
func (s *Server) StopTaskNow(id, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tasks {
		if t.id == id {
			t.stop("UserInitiated", reason)
			return nil
		}
	}
	return fmt.Errorf("ecssim: no task %s", id)
}

// KillTask SIGKILLs a task's container, as the kernel's OOM killer or a crashed host would:
// nothing in the container gets to clean up; ECS then stops the task (EssentialContainerExited).
func (s *Server) KillTask(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tasks {
		if t.id == id && t.proc != nil {
			t.proc.Kill()
			return nil
		}
	}
	return fmt.Errorf("ecssim: no running container for task %s", id)
}

// WaitTasks polls until cond holds for the task list or ctx ends.
func (s *Server) WaitTasks(ctx context.Context, cond func([]TaskView) bool) ([]TaskView, error) {
	for {
		v := s.Tasks()
		if cond(v) {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("ecssim: wait: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ---- HTTP ----

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/_ecssim/tasks" {
		// Not an ECS API: the simulator's own view, unsigned, for demos (loopback only).
		buf, _ := json.Marshal(s.Tasks())
		w.Header().Set("Content-Type", "application/json")
		w.Write(buf)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeErr(w, clientErr("request body: "+err.Error()))
		return
	}
	// awsJson1.1: every operation is POST / with the operation named in X-Amz-Target
	// (Smithy "AWS JSON 1.1 protocol", "Protocol behaviors").
	target := r.Header.Get("X-Amz-Target")
	if r.Method != http.MethodPost || !strings.HasPrefix(target, targetPrefix) {
		writeErr(w, &apiError{http.StatusBadRequest, "UnknownOperationException", "missing or unknown X-Amz-Target " + strconv.Quote(target)})
		return
	}
	op := strings.TrimPrefix(target, targetPrefix)
	if err := verifySigV4(r, body, s.opts.Keys, s.opts.Region, "ecs", time.Now().UTC()); err != nil {
		code := "SignatureDoesNotMatch"
		status := http.StatusForbidden
		if errors.Is(err, errUnrecognizedClient) {
			code = "UnrecognizedClientException"
			status = http.StatusBadRequest
		}
		writeErr(w, &apiError{status, code, err.Error()})
		return
	}
	s.mu.Lock()
	if s.throttle > 0 {
		s.throttle--
		s.mu.Unlock()
		writeErr(w, &apiError{http.StatusBadRequest, "ThrottlingException", "Rate exceeded"})
		return
	}
	s.mu.Unlock()
	var out any
	var aerr *apiError
	switch op {
	case "RunTask":
		out, aerr = s.runTask(body)
	case "StopTask":
		out, aerr = s.stopTask(body)
	case "DescribeTasks":
		out, aerr = s.describeTasks(body)
	case "ListTasks":
		out, aerr = s.listTasks(body)
	case "DescribeTaskDefinition":
		out, aerr = s.describeTaskDefinition(body)
	case "DescribeClusters":
		out, aerr = s.describeClusters(body)
	case "RegisterTaskDefinition":
		out, aerr = s.registerTaskDefinition(body)
	default:
		aerr = &apiError{http.StatusBadRequest, "UnknownOperationException", "ecssim does not implement " + op}
	}
	if aerr != nil {
		s.log.Debug("ecssim: error", "op", op, "code", aerr.code, "msg", aerr.msg)
		writeErr(w, aerr)
		return
	}
	s.mu.Lock()
	s.calls[op]++
	s.mu.Unlock()
	var buf []byte
	if raw, ok := out.(json.RawMessage); ok {
		buf = raw
	} else {
		buf, _ = json.Marshal(out)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", newID())
	w.Write(buf)
}

func writeErr(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	w.Header().Set("X-Amzn-RequestId", newID())
	w.WriteHeader(e.status)
	buf, _ := json.Marshal(map[string]string{"__type": e.code, "message": e.msg})
	w.Write(buf)
}

func decode(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{http.StatusBadRequest, "SerializationException", err.Error()}
	}
	return nil
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// clusterLocked resolves a cluster name or ARN; empty means "default" (API_RunTask: "If you do
// not specify a cluster, the default cluster is assumed").
func (s *Server) clusterLocked(ref string) (*cluster, *apiError) {
	if ref == "" {
		ref = "default"
	}
	name := ref
	if strings.HasPrefix(ref, "arn:") {
		_, name, _ = strings.Cut(ref, ":cluster/")
	}
	c := s.clusters[name]
	if c == nil {
		// ClusterNotFoundException: "The specified cluster wasn't found." (API_RunTask, Errors)
		return nil, &apiError{http.StatusBadRequest, "ClusterNotFoundException", "Cluster not found."}
	}
	return c, nil
}

// taskDefLocked resolves family, family:revision or ARN (API_RunTask: taskDefinition "If a
// revision isn't specified, the latest ACTIVE revision is used").
func (s *Server) taskDefLocked(ref string) *TaskDefinition {
	if strings.HasPrefix(ref, "arn:") {
		_, ref, _ = strings.Cut(ref, ":task-definition/")
	}
	fam, rev, hasRev := strings.Cut(ref, ":")
	revs := s.taskDefs[fam]
	if len(revs) == 0 {
		return nil
	}
	if !hasRev {
		return revs[len(revs)-1]
	}
	n, err := strconv.Atoi(rev)
	if err != nil || n < 1 || n > len(revs) {
		return nil
	}
	return revs[n-1]
}

func (s *Server) describeTaskDefinition(body []byte) (any, *apiError) {
	var in struct {
		TaskDefinition string `json:"taskDefinition"`
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	td := s.taskDefLocked(in.TaskDefinition)
	if td == nil {
		// Real answer for an unknown family: ClientException "Unable to describe task definition."
		return nil, clientErr("Unable to describe task definition.")
	}
	return map[string]any{"taskDefinition": td, "tags": []Tag{}}, nil
}

func (s *Server) registerTaskDefinition(body []byte) (any, *apiError) {
	var in TaskDefinition
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	td, err := s.RegisterTaskDefinition(in)
	if err != nil {
		return nil, clientErr(err.Error())
	}
	return map[string]any{"taskDefinition": td}, nil
}

func (s *Server) describeClusters(body []byte) (any, *apiError) {
	var in struct {
		Clusters []string `json:"clusters"`
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	if len(in.Clusters) == 0 {
		in.Clusters = []string{"default"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := struct {
		Clusters []wireCluster `json:"clusters"`
		Failures []failure     `json:"failures"`
	}{Clusters: []wireCluster{}, Failures: []failure{}}
	for _, ref := range in.Clusters {
		c, e := s.clusterLocked(ref)
		if e != nil {
			// API_DescribeClusters: unknown clusters come back in failures[] with reason MISSING.
			arn := ref
			if !strings.HasPrefix(arn, "arn:") {
				arn = s.arn("cluster/" + ref)
			}
			out.Failures = append(out.Failures, failure{Arn: arn, Reason: "MISSING"})
			continue
		}
		wc := wireCluster{ClusterArn: c.arn, ClusterName: c.name, Status: "ACTIVE", CapacityProviders: []string{"FARGATE", "FARGATE_SPOT"}}
		for _, t := range s.tasks {
			if t.cluster == c && t.lastStatus == StatusRunning {
				wc.RunningTasksCount++
			} else if t.cluster == c && (t.lastStatus == StatusPending || t.lastStatus == StatusProvisioning) {
				wc.PendingTasksCount++
			}
		}
		out.Clusters = append(out.Clusters, wc)
	}
	return out, nil
}

func (s *Server) runTask(body []byte) (any, *apiError) {
	var in runTaskInput
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	count := 1
	if in.Count != nil {
		count = *in.Count
	}
	// API_RunTask: count "Valid Range: Minimum value of 1. Maximum value of 10."
	if count < 1 || count > 10 {
		return nil, invalidParam("count must be between 1 and 10")
	}
	// startedBy: "Up to 128 letters (uppercase and lowercase), numbers, hyphens (-), forward slash
	// (/), and underscores (_) are allowed."
	if len(in.StartedBy) > 128 || strings.IndexFunc(in.StartedBy, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '/' || r == '_')
	}) >= 0 {
		return nil, invalidParam("startedBy may hold up to 128 letters, numbers, hyphens, forward slashes and underscores")
	}
	// clientToken: "Up to 64 characters are allowed."
	if len(in.ClientToken) > 64 {
		return nil, invalidParam("clientToken may be at most 64 characters")
	}
	// tags: "Maximum number of tags per resource - 50", key ≤ 128, value ≤ 256; the aws: prefix is reserved.
	if len(in.Tags) > 50 {
		return nil, invalidParam("at most 50 tags per resource")
	}
	for _, t := range in.Tags {
		if t.Key == "" || len(t.Key) > 128 || len(t.Value) > 256 || strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return nil, invalidParam(fmt.Sprintf("tag %q: keys 1-128 characters, values up to 256, no aws: prefix", t.Key))
		}
	}
	// "When you use cluster auto scaling, you must specify capacityProviderStrategy and not
	// launchType." / a strategy and a launch type together: InvalidParameterException.
	if in.LaunchType != "" && len(in.CapacityProviderStrategy) > 0 {
		return nil, invalidParam("Specifying both a launch type and capacity provider strategy is not supported.")
	}
	for _, it := range in.CapacityProviderStrategy {
		if it.CapacityProvider != "FARGATE" && it.CapacityProvider != "FARGATE_SPOT" {
			return nil, invalidParam(fmt.Sprintf("The specified capacity provider %s is not associated with the cluster.", it.CapacityProvider))
		}
		if it.Weight < 0 || it.Weight > 1000 || it.Base < 0 || it.Base > 100000 {
			return nil, invalidParam("capacity provider weight must be 0-1000 and base 0-100000")
		}
	}
	canon, _ := json.Marshal(in)
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.clusterLocked(in.Cluster)
	if e != nil {
		return nil, e
	}
	// clientToken: "An identifier that you provide to ensure the idempotency of the request. It
	// must be unique and is case sensitive." A repeated call with the same token gets the first
	// call's answer and starts nothing; the same token with other parameters is refused.
	if in.ClientToken != "" {
		if prev := s.tokens[in.ClientToken]; prev != nil {
			if prev.req != string(canon) {
				return nil, invalidParam("The client token was already used with different request parameters.")
			}
			return json.RawMessage(prev.resp), nil
		}
	}
	td := s.taskDefLocked(in.TaskDefinition)
	if td == nil {
		return nil, invalidParam("TaskDefinition not found.")
	}
	// "Network Configuration must be provided when networkMode 'awsvpc' is specified."
	if td.NetworkMode == "awsvpc" && (in.NetworkConfiguration == nil || in.NetworkConfiguration.AwsvpcConfiguration == nil ||
		len(in.NetworkConfiguration.AwsvpcConfiguration.Subnets) == 0) {
		return nil, invalidParam("Network Configuration must be provided when networkMode 'awsvpc' is specified.")
	}
	if nc := in.NetworkConfiguration; nc != nil && nc.AwsvpcConfiguration != nil {
		if a := nc.AwsvpcConfiguration.AssignPublicIP; a != "" && a != "ENABLED" && a != "DISABLED" {
			return nil, &apiError{http.StatusBadRequest, "SerializationException", "assignPublicIp must be ENABLED or DISABLED"}
		}
		if len(nc.AwsvpcConfiguration.Subnets) > 16 || len(nc.AwsvpcConfiguration.SecurityGroups) > 5 {
			return nil, invalidParam("at most 16 subnets and 5 security groups")
		}
	}
	ess := essential(td)
	if in.Overrides != nil {
		for _, co := range in.Overrides.ContainerOverrides {
			if containerDef(td, co.Name) == nil {
				return nil, invalidParam(fmt.Sprintf("Override for container named %s is not a container in the TaskDefinition.", co.Name))
			}
		}
	}
	out := struct {
		Tasks    []wireTask `json:"tasks"`
		Failures []failure  `json:"failures"`
	}{Tasks: []wireTask{}, Failures: []failure{}}
	strategy := expandStrategy(in.CapacityProviderStrategy, in.LaunchType, count)
	for i := range count {
		if s.capacity > 0 {
			s.capacity--
			out.Failures = append(out.Failures, failure{Reason: CapacityReason})
			continue
		}
		id := newID()
		t := &task{s: s, id: id, arn: s.arn("task/" + c.name + "/" + id), cluster: c, td: td, container: ess.Name,
			startedBy: in.StartedBy, group: in.Group, tags: append([]Tag(nil), in.Tags...), overrides: in.Overrides,
			clientTok: in.ClientToken, lastStatus: StatusProvisioning, desiredStatus: StatusRunning, createdAt: time.Now(),
			stopReq: make(chan struct{}), launchType: "FARGATE", capProv: strategy[i]}
		if t.group == "" {
			t.group = "family:" + td.Family // API_Task group default
		}
		if in.LaunchType != "" {
			t.launchType, t.capProv = in.LaunchType, ""
		}
		if nc := in.NetworkConfiguration; nc != nil && nc.AwsvpcConfiguration != nil && len(nc.AwsvpcConfiguration.Subnets) > 0 {
			t.subnet = nc.AwsvpcConfiguration.Subnets[i%len(nc.AwsvpcConfiguration.Subnets)]
		}
		t.env, t.command = containerEnv(td, ess.Name, in.Overrides)
		if len(s.bootDeath) > 0 {
			t.bootEnv = s.bootDeath[0]
			s.bootDeath = s.bootDeath[1:]
		}
		s.tasks = append(s.tasks, t)
		s.byARN[t.arn] = t
		s.changedLocked()
		s.wg.Add(1)
		go t.lifecycle()
		out.Tasks = append(out.Tasks, t.wire(true))
	}
	resp, _ := json.Marshal(out)
	if in.ClientToken != "" {
		s.tokens[in.ClientToken] = &tokenEntry{req: string(canon), resp: resp, at: time.Now()}
	}
	return json.RawMessage(resp), nil
}

// expandStrategy assigns each new task a capacity provider: base first, then by weight
// (API_CapacityProviderStrategyItem: "base ... minimum number of tasks to run on the specified
// capacity provider"; "weight ... relative percentage of the total number of launched tasks").
func expandStrategy(items []capacityProviderStrategyItem, launchType string, n int) []string {
	out := make([]string, 0, n)
	if len(items) == 0 {
		for range n {
			if launchType == "" {
				out = append(out, "FARGATE") // cluster default strategy
			} else {
				out = append(out, "")
			}
		}
		return out
	}
	for _, it := range items {
		for j := 0; j < it.Base && len(out) < n; j++ {
			out = append(out, it.CapacityProvider)
		}
	}
	total := 0
	for _, it := range items {
		total += it.Weight
	}
	for k := 0; len(out) < n; k++ {
		if total == 0 {
			out = append(out, items[0].CapacityProvider)
			continue
		}
		slot, acc := k%total, 0
		for _, it := range items {
			acc += it.Weight
			if slot < acc {
				out = append(out, it.CapacityProvider)
				break
			}
		}
	}
	return out
}

func essential(td *TaskDefinition) ContainerDefinition {
	for _, c := range td.ContainerDefinitions {
		if c.Essential == nil || *c.Essential {
			return c
		}
	}
	return td.ContainerDefinitions[0]
}

func containerDef(td *TaskDefinition, name string) *ContainerDefinition {
	for i := range td.ContainerDefinitions {
		if td.ContainerDefinitions[i].Name == name {
			return &td.ContainerDefinitions[i]
		}
	}
	return nil
}

// containerEnv is the container's environment: definition first, then the override's entries
// (API_ContainerOverride: environment "You can add new environment variables ... or override
// existing environment variables").
func containerEnv(td *TaskDefinition, name string, ov *taskOverride) (map[string]string, []string) {
	env := map[string]string{}
	cd := containerDef(td, name)
	cmd := cd.Command
	for _, kv := range cd.Environment {
		env[kv.Name] = kv.Value
	}
	if ov != nil {
		for _, co := range ov.ContainerOverrides {
			if co.Name != name {
				continue
			}
			for _, kv := range co.Environment {
				env[kv.Name] = kv.Value
			}
			if len(co.Command) > 0 {
				cmd = co.Command
			}
		}
	}
	return env, cmd
}

func (s *Server) stopTask(body []byte) (any, *apiError) {
	var in struct {
		Cluster, Task, Reason string
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.clusterLocked(in.Cluster)
	if e != nil {
		return nil, e
	}
	t := s.findTaskLocked(c, in.Task)
	if t == nil {
		// Unknown task: InvalidParameterException "The referenced task was not found."
		return nil, invalidParam("The referenced task was not found.")
	}
	// API_StopTask: "the stopTimeout ... SIGTERM ... SIGKILL"; stoppedReason "Task stopped by user"
	// unless a reason is given; stopCode UserInitiated.
	reason := in.Reason
	if reason == "" {
		reason = "Task stopped by user"
	}
	t.stop("UserInitiated", reason)
	return map[string]any{"task": t.wire(false)}, nil
}

func (s *Server) findTaskLocked(c *cluster, ref string) *task {
	if t := s.byARN[ref]; t != nil && t.cluster == c {
		return t
	}
	for _, t := range s.tasks {
		if t.cluster == c && t.id == ref {
			return t
		}
	}
	return nil
}

func (s *Server) describeTasks(body []byte) (any, *apiError) {
	var in struct {
		Cluster string   `json:"cluster"`
		Tasks   []string `json:"tasks"`
		Include []string `json:"include"`
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	// API_DescribeTasks: tasks "A list of up to 100 task IDs or full ARN entries."
	if len(in.Tasks) == 0 || len(in.Tasks) > 100 {
		return nil, invalidParam("tasks must list between 1 and 100 tasks")
	}
	tags := false
	for _, v := range in.Include {
		tags = tags || v == "TAGS" // "If TAGS is specified, the tags are included in the response."
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.clusterLocked(in.Cluster)
	if e != nil {
		return nil, e
	}
	s.expireLocked()
	out := struct {
		Tasks    []wireTask `json:"tasks"`
		Failures []failure  `json:"failures"`
	}{Tasks: []wireTask{}, Failures: []failure{}}
	for _, ref := range in.Tasks {
		t := s.findTaskLocked(c, ref)
		if t == nil {
			out.Failures = append(out.Failures, failure{Arn: ref, Reason: "MISSING"})
			continue
		}
		out.Tasks = append(out.Tasks, t.wire(tags))
	}
	return out, nil
}

func (s *Server) listTasks(body []byte) (any, *apiError) {
	var in struct {
		Cluster           string `json:"cluster"`
		Family            string `json:"family"`
		StartedBy         string `json:"startedBy"`
		ServiceName       string `json:"serviceName"`
		ContainerInstance string `json:"containerInstance"`
		DesiredStatus     string `json:"desiredStatus"`
		LaunchType        string `json:"launchType"`
		MaxResults        *int   `json:"maxResults"`
		NextToken         string `json:"nextToken"`
	}
	if e := decode(body, &in); e != nil {
		return nil, e
	}
	// API_ListTasks startedBy: "When you specify startedBy as the filter, it must be the only
	// filter that you use." The simulator is strict about it, so a caller that works here works
	// whatever ECS makes of a combination.
	if in.StartedBy != "" && (in.Family != "" || in.ServiceName != "" || in.ContainerInstance != "" || in.DesiredStatus != "" || in.LaunchType != "") {
		return nil, invalidParam("When you specify startedBy as the filter, it must be the only filter that you use.")
	}
	// desiredStatus: "The default status filter is RUNNING"; PENDING "doesn't return any results".
	want := in.DesiredStatus
	if want == "" {
		want = StatusRunning
	}
	if want != StatusRunning && want != StatusPending && want != StatusStopped {
		return nil, &apiError{http.StatusBadRequest, "SerializationException", "desiredStatus must be RUNNING, PENDING or STOPPED"}
	}
	// maxResults: 1-100, default 100.
	limit := 100
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 100 {
			return nil, invalidParam("maxResults must be between 1 and 100")
		}
		limit = *in.MaxResults
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, e := s.clusterLocked(in.Cluster)
	if e != nil {
		return nil, e
	}
	s.expireLocked()
	var arns []string
	for _, t := range s.tasks {
		if t.cluster != c || t.desiredStatus != want || (in.Family != "" && t.td.Family != in.Family) ||
			(in.StartedBy != "" && t.startedBy != in.StartedBy) || (in.LaunchType != "" && t.launchType != in.LaunchType) ||
			in.ServiceName != "" {
			continue
		}
		arns = append(arns, t.arn)
	}
	sort.Strings(arns)
	start := 0
	if in.NextToken != "" {
		n, err := strconv.Atoi(in.NextToken)
		if err != nil || n < 0 || n > len(arns) {
			return nil, invalidParam("The nextToken is invalid.")
		}
		start = n
	}
	end := min(start+limit, len(arns))
	out := map[string]any{"taskArns": append([]string{}, arns[start:end]...)}
	if end < len(arns) {
		out["nextToken"] = strconv.Itoa(end)
	}
	return out, nil
}

// expireLocked forgets STOPPED tasks older than KeepStopped ("stopped tasks appear in the
// returned results for at least one hour").
func (s *Server) expireLocked() {
	now := time.Now()
	kept := s.tasks[:0]
	for _, t := range s.tasks {
		if t.lastStatus == StatusStopped && now.Sub(t.stoppedAt) > s.opts.KeepStopped {
			delete(s.byARN, t.arn)
			continue
		}
		kept = append(kept, t)
	}
	s.tasks = kept
	for k, v := range s.tokens {
		if now.Sub(v.at) > 10*time.Minute {
			delete(s.tokens, k)
		}
	}
}

// changedLocked records the instant's bookkeeping and tells the observer.
func (s *Server) changedLocked() {
	active := map[string]int{}
	for _, t := range s.tasks {
		if t.lastStatus != StatusStopped {
			active[t.startedBy]++
		}
	}
	for k, n := range active {
		if n > s.maxActive[k] {
			s.maxActive[k] = n
		}
	}
	if s.opts.OnChange != nil {
		s.opts.OnChange(s.viewsLocked())
	}
}

func (t *task) wire(withTags bool) wireTask {
	w := wireTask{TaskArn: t.arn, ClusterArn: t.cluster.arn, TaskDefinitionArn: t.td.TaskDefinitionArn,
		LastStatus: t.lastStatus, DesiredStatus: t.desiredStatus, StartedBy: t.startedBy, Group: t.group,
		LaunchType: t.launchType, CapacityProviderName: t.capProv, PlatformVersion: "1.4.0", CPU: t.td.CPU, Memory: t.td.Memory,
		AvailabilityZone: t.s.opts.Region + "a", Version: t.version, Overrides: t.overrides,
		CreatedAt: ts(t.createdAt), PullStartedAt: ts(t.pullStartedAt), PullStoppedAt: ts(t.pullStoppedAt),
		StartedAt: ts(t.startedAt), StoppingAt: ts(t.stoppingAt), ExecutionStoppedAt: ts(t.execStoppedAt),
		StoppedAt: ts(t.stoppedAt), StopCode: t.stopCode, StoppedReason: t.stoppedReason}
	if w.Overrides == nil {
		w.Overrides = &taskOverride{ContainerOverrides: []containerOverride{}}
	}
	if t.lastStatus == StatusRunning {
		w.Connectivity = "CONNECTED"
	}
	if withTags {
		w.Tags = append([]Tag{}, t.tags...)
	}
	cs := containerStatus(t.lastStatus)
	w.Containers = []wireContainer{{ContainerArn: t.s.arn("container/" + t.cluster.name + "/" + t.id + "/" + t.container),
		TaskArn: t.arn, Name: t.container, LastStatus: cs, ExitCode: t.exitCode, Reason: t.containerReason}}
	if t.subnet != "" {
		w.Attachments = []wireAttachment{{ID: t.id[:8] + "-eni", Type: "ElasticNetworkInterface", Status: attachmentStatus(t.lastStatus),
			Details: []KeyValuePair{{Name: "subnetId", Value: t.subnet}, {Name: "privateIPv4Address", Value: "10.0.0." + strconv.Itoa(int(t.id[0])%250+2)}}}}
	}
	return w
}

func containerStatus(task string) string {
	switch task {
	case StatusProvisioning, StatusPending:
		return StatusPending
	case StatusRunning:
		return StatusRunning
	}
	return StatusStopped
}

func attachmentStatus(task string) string {
	switch task {
	case StatusProvisioning:
		return "PRECREATED"
	case StatusStopped:
		return "DELETED"
	case StatusDeprovisioning:
		return "DELETING"
	}
	return "ATTACHED"
}

//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/ecssim"
)

const (
	fleetPool      = "Fleet"
	fleetCluster   = "azp-agents"
	fleetFamily    = "azp-agent"
	fleetContainer = "agent"
	fleetSubnet    = "subnet-0bench000000000001"
)

// fleetEnv is one driver's world: its own simulator (Azure DevOps) and its own local ECS, so that
// drivers running side by side never see each other's jobs, agents, tasks or API calls.
//
// The simulator is served on two loopback ports with the same handler: the agents' port (every
// task's AZP_URL) and the controller's port (the scaler or baseline under test), which counts its
// requests: "Azure DevOps requests per job" are the controller's alone.
type fleetEnv struct {
	name  string
	w     workloadSpec
	b     *bench
	dir   string
	sim   *sim.Server
	token string

	agentsOrg, ctlOrg string
	servers           []*http.Server
	ctlRequests       atomic.Int64
	ctlByStatus       sync.Map // status -> *atomic.Int64

	ecs     *ecssim.Server
	ecsURL  string
	taskDef string
	limit   int // the controller's max (AZP_SCALE_MAX); 0: none

	mu        sync.Mutex
	tasks     map[string]*taskRec // by task ARN
	active    int                 // tasks not STOPPED, now
	maxActive int
	overMax   []string // instants at which more than limit tasks were not STOPPED
}

// taskRec is one ECS task's life as the local ECS reported it (OnChange).
type taskRec struct {
	ID, StartedBy string
	Tags          map[string]string
	Env           map[string]string
	Created       time.Time // RunTask
	Running       time.Time // container started
	Ended         time.Time // container gone (STOPPING or DEPROVISIONING first seen): Fargate bills until here
	Stopped       time.Time // STOPPED
	LastStatus    string
	StopCode      string
	ExitCode      *int
}

func (b *bench) newFleetEnv(name string, w workloadSpec) (*fleetEnv, error) {
	return b.newFleetEnvOpts(name, w, sim.Options{Pools: []string{fleetPool}})
}

func (b *bench) newFleetEnvOpts(name string, w workloadSpec, so sim.Options) (*fleetEnv, error) {
	e := &fleetEnv{name: name, w: w, b: b, token: "fleet" + randHex(16), tasks: map[string]*taskRec{}}
	e.dir = filepath.Join(b.tmp, "fleet-"+name)
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, err
	}
	// The simulator's own timings stay as they are (its long poll, its offline detection): they are
	// the service's, not the workload's.
	e.sim = sim.New(so)
	// The organisation's self-hosted parallel jobs: enough for the workload's peak, as a user
	// sizing the licence to it would have.
	e.sim.SetParallelJobs(w.peakConcurrency() + w.PerBurst/4)
	if err := e.sim.AddToken(e.token, sim.ScopeManage); err != nil {
		return nil, err
	}
	if err := e.sim.AddPackage(sim.PackageSpec{Version: b.fleetPkg.Version, Platform: platform, FilePath: b.fleetPkg.Path}); err != nil {
		return nil, err
	}
	h := e.sim.Handler()
	serve := func(counted bool) (string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		hh := h
		if counted {
			hh = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rw := &recWriter{ResponseWriter: w}
				h.ServeHTTP(rw, r)
				e.ctlRequests.Add(1)
				st := rw.status
				if st == 0 {
					st = http.StatusOK
				}
				c, _ := e.ctlByStatus.LoadOrStore(st, new(atomic.Int64))
				c.(*atomic.Int64).Add(1)
			})
		}
		hs := &http.Server{Handler: hh, ReadHeaderTimeout: 10 * time.Second}
		e.servers = append(e.servers, hs)
		go hs.Serve(ln)
		return "http://" + ln.Addr().String() + "/sim", nil
	}
	var err error
	if e.agentsOrg, err = serve(false); err != nil {
		return nil, err
	}
	if e.ctlOrg, err = serve(true); err != nil {
		return nil, err
	}

	half := w.wall(w.P) / 2
	e.ecs = ecssim.New(ecssim.Options{
		Clusters: []string{fleetCluster},
		Delays:   ecssim.Delays{Provisioning: half, Pending: w.wall(w.P) - half, Deprovisioning: w.wall(10 * time.Second)},
		Launcher: &ecssim.ExecLauncher{Binary: b.ep, Dir: filepath.Join(e.dir, "tasks"),
			TaskDirEnv: map[string]string{"AZP_AGENT_DIR": "azp/agent", "AZP_STATE_DIR": "state", "HOME": "home", "AZP_WORK": "azp/_work"}},
		OnChange: e.onChange,
	})
	if e.ecsURL, err = e.ecs.Start(); err != nil {
		return nil, err
	}
	stop := 30 // ECS default; the agents drain a job within it when stopped idle
	td, err := e.ecs.RegisterTaskDefinition(ecssim.TaskDefinition{Family: fleetFamily, CPU: "1024", Memory: "2048",
		RuntimePlatform: &ecssim.RuntimePlatform{CPUArchitecture: "X86_64", OperatingSystemFamily: "LINUX"},
		ContainerDefinitions: []ecssim.ContainerDefinition{{Name: fleetContainer, Image: "azp-entrypoint:bench", StopTimeout: &stop,
			Environment: []ecssim.KeyValuePair{
				{Name: "AZP_URL", Value: e.agentsOrg}, {Name: "AZP_TOKEN", Value: e.token}, {Name: "AZP_POOL", Value: fleetPool},
				{Name: "AZP_AGENT_PLATFORM", Value: platform}, {Name: "AZP_LOG_FORMAT", Value: "json"},
				{Name: "AZP_WORK_MIN_FREE", Value: "1MiB"}, {Name: "LANG", Value: "C.UTF-8"}, {Name: "AZP_STOP_TIMEOUT", Value: "10s"},
				// The image offers docker (the listener reports its environment as system capabilities).
				{Name: "docker", Value: "true"},
				// The package is baked into the image: a cache shared by every task stands for it.
				{Name: "AZP_AGENT_CACHE", Value: filepath.Join(e.dir, "agent-cache")},
			}}}})
	if err != nil {
		return nil, err
	}
	e.taskDef = td.TaskDefinitionArn
	return e, nil
}

// onChange runs under the local ECS's lock at every status change, with every task: it keeps each
// task's timeline and checks the max at every instant, not only at the end.
func (e *fleetEnv) onChange(views []ecssim.TaskView) {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	active := 0
	for _, v := range views {
		r := e.tasks[v.ARN]
		if r == nil {
			r = &taskRec{ID: v.ID, StartedBy: v.StartedBy, Tags: v.Tags, Env: v.Env, Created: v.CreatedAt}
			e.tasks[v.ARN] = r
		}
		r.LastStatus, r.StopCode, r.ExitCode = v.LastStatus, v.StopCode, v.ExitCode
		if !v.StartedAt.IsZero() {
			r.Running = v.StartedAt
		}
		switch v.LastStatus {
		case ecssim.StatusStopping, ecssim.StatusDeprovisioning, ecssim.StatusStopped:
			if r.Ended.IsZero() {
				r.Ended = now
			}
		}
		if v.LastStatus == ecssim.StatusStopped {
			if r.Stopped.IsZero() {
				r.Stopped = v.StoppedAt
				if r.Stopped.IsZero() {
					r.Stopped = now
				}
			}
		} else {
			active++
		}
	}
	e.active = active
	e.maxActive = max(e.maxActive, active)
	if e.limit > 0 && active > e.limit {
		e.overMax = append(e.overMax, fmt.Sprintf("%s: %d tasks", now.Format("15:04:05.000"), active))
	}
}

func (e *fleetEnv) taskSnapshot() []taskRec {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]taskRec, 0, len(e.tasks))
	for _, r := range e.tasks {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

func (e *fleetEnv) activeTasks() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.active
}

// ecsClient is the real aws-sdk-go-v2 client signed for the local ECS.
func (e *fleetEnv) ecsClient() *ecs.Client { return e.ecs.Client() }

// runTasks starts n agent tasks with RunTask, at most 10 per call (API_RunTask: count 1-10), with
// the environment overrides given; it returns how many started.
func (e *fleetEnv) runTasks(ctx context.Context, c *ecs.Client, n int, startedBy string, env map[string]string, tags map[string]string) (int, error) {
	var kv []ecstypes.KeyValuePair
	for k, v := range env {
		kv = append(kv, ecstypes.KeyValuePair{Name: aws.String(k), Value: aws.String(v)})
	}
	var tg []ecstypes.Tag
	for k, v := range tags {
		tg = append(tg, ecstypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	started := 0
	for n > 0 {
		cnt := min(n, 10)
		out, err := c.RunTask(ctx, &ecs.RunTaskInput{Cluster: aws.String(fleetCluster), TaskDefinition: aws.String(e.taskDef),
			Count: aws.Int32(int32(cnt)), StartedBy: aws.String(startedBy), LaunchType: ecstypes.LaunchTypeFargate,
			NetworkConfiguration: &ecstypes.NetworkConfiguration{AwsvpcConfiguration: &ecstypes.AwsVpcConfiguration{Subnets: []string{fleetSubnet}}},
			Overrides:            &ecstypes.TaskOverride{ContainerOverrides: []ecstypes.ContainerOverride{{Name: aws.String(fleetContainer), Environment: kv}}},
			Tags:                 tg})
		if err != nil {
			return started, err
		}
		started += len(out.Tasks)
		n -= cnt
	}
	return started, nil
}

func (e *fleetEnv) close() {
	if e.ecs != nil {
		e.ecs.Close() // kills every container still running and reaps it
	}
	for _, s := range e.servers {
		s.Close()
	}
	if e.sim != nil {
		e.sim.Close()
	}
}

// ecsCalls is every API call the local ECS served (the controller is its only API client).
func (e *fleetEnv) ecsCalls() map[string]int {
	out := map[string]int{}
	for _, op := range []string{"RunTask", "StopTask", "DescribeTasks", "ListTasks", "DescribeTaskDefinition", "DescribeClusters", "RegisterTaskDefinition"} {
		if n := e.ecs.Calls(op); n > 0 {
			out[op] = n
		}
	}
	return out
}

func (e *fleetEnv) ctlStatuses() string {
	var parts []string
	e.ctlByStatus.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%d×%d", v.(*atomic.Int64).Load(), k.(int)))
		return true
	})
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

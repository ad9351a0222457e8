//go:build linux

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/ecssim"
)

// driver is one way of supplying the pool with agent tasks on the local ECS.
type driver interface {
	label() string
	// max is the most tasks it may have at once (0: no limit of its own).
	max() int
	// start starts the controller (and, for the fixed fleet, its agents) before the workload.
	start(ctx context.Context, e *fleetEnv) error
	// stop ends the controller itself, never its tasks.
	stop()
	// drains says whether its tasks leave by themselves once the work is done.
	drains() bool
	// notes describe its settings for the report.
	notes() string
}

// ---- azp-entrypoint scale ----

// scalerDriver runs the real `azp-entrypoint scale` process against the controller's port of the
// simulator and the local ECS (through the aws-sdk-go-v2 client, AWS_ENDPOINT_URL_ECS).
type scalerDriver struct {
	mode    string // once or persistent
	standby int
	limit   int
	w       workloadSpec
	ep      string

	p       *exec.Cmd
	done    chan struct{}
	logPath string
	prefix  string
}

func (d *scalerDriver) label() string {
	s := "azp-entrypoint scale, " + d.mode
	if d.standby > 0 {
		s += fmt.Sprintf(", standby %d", d.standby)
	}
	return s
}
func (d *scalerDriver) max() int     { return d.limit }
func (d *scalerDriver) drains() bool { return d.mode == "once" || d.standby == 0 }
func (d *scalerDriver) notes() string {
	return fmt.Sprintf("`AZP_SCALE_AGENT_MODE=%s`, `AZP_SCALE_STANDBY=%d`, `AZP_SCALE_MAX=%d`, `AZP_SCALE_INTERVAL=%s` (5 s), `AZP_SCALE_BOOT_TIMEOUT=%s` (5 min), `AZP_SCALE_IDLE_TIMEOUT=%s` (15 min), `AZP_SCALE_CAPABILITIES=docker`",
		d.mode, d.standby, d.limit, d.w.wall(5*time.Second), d.w.wall(5*time.Minute), d.w.wall(15*time.Minute))
}

func (d *scalerDriver) env(e *fleetEnv) []string {
	w := d.w
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(e.dir, "scaler-home"), "LANG=C.UTF-8",
		"AZP_URL=" + e.ctlOrg, "AZP_TOKEN=" + e.token, "AZP_POOL=" + fleetPool,
		"AZP_AGENT_NAME_PREFIX=" + d.prefix, "AZP_LOG_FORMAT=json",
		"AZP_SCALE_CLUSTER=" + fleetCluster, "AZP_SCALE_TASK_DEFINITION=" + fleetFamily, "AZP_SCALE_CONTAINER=" + fleetContainer,
		"AZP_SCALE_SUBNETS=" + fleetSubnet, "AZP_SCALE_AGENT_MODE=" + d.mode,
		"AZP_SCALE_MAX=" + strconv.Itoa(d.limit), "AZP_SCALE_STANDBY=" + strconv.Itoa(d.standby),
		"AZP_SCALE_CAPABILITIES=docker",
		"AZP_SCALE_INTERVAL=" + w.wall(5*time.Second).String(),
		"AZP_SCALE_BOOT_TIMEOUT=" + w.wall(5*time.Minute).String(),
		"AZP_SCALE_IDLE_TIMEOUT=" + w.wall(15*time.Minute).String(),
		"AZP_STATE_DIR=" + filepath.Join(e.dir, "scaler-state"),
		"AWS_ENDPOINT_URL_ECS=" + e.ecsURL, "AWS_REGION=" + e.ecs.Region(),
		"AWS_ACCESS_KEY_ID=" + ecssim.DefaultAccessKeyID, "AWS_SECRET_ACCESS_KEY=" + ecssim.DefaultSecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

func (d *scalerDriver) start(ctx context.Context, e *fleetEnv) error {
	d.prefix = "b" + randHex(3) + "-"
	d.logPath = filepath.Join(e.dir, "scaler.log")
	return d.launch(e)
}

func (d *scalerDriver) launch(e *fleetEnv) error {
	f, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.ep, "scale")
	cmd.Env, cmd.Dir = d.env(e), e.dir
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start the scaler: %w", err)
	}
	d.p, d.done = cmd, make(chan struct{})
	done := d.done
	go func() { cmd.Wait(); f.Close(); close(done) }()
	return nil
}

// restart kills the scaler (SIGKILL, as a crashed or replaced ECS service task) and starts a new one.
func (d *scalerDriver) restart(e *fleetEnv) error {
	if d.p != nil {
		d.p.Process.Signal(syscall.SIGKILL)
		<-d.done
	}
	return d.launch(e)
}

func (d *scalerDriver) stop() {
	if d.p == nil {
		return
	}
	d.p.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.p.Process.Kill()
		<-d.done
	}
}

// ---- KEDA-style baseline ----

// kedaDriver is KEDA's azure-pipelines scaler driving a ScaledJob, written to its published
// algorithm (github:kedacore/keda):
//   - pkg/scalers/azure_pipelines_scaler.go, GetAzurePipelinesQueueURL and
//     GetAzurePipelinesQueueLength: every pollingInterval (default 30 s) one GET of
//     {org}/_apis/distributedtask/pools/{id}/jobrequests?$top=<jobsToFetch, default 250> with the
//     PAT as Basic auth; the queue length is the count of requests without a result. Before
//     e6e6fe1b5 (#7757, May 2026) that count included requests already assigned and running, as
//     issue 16 asks for; since then KEDA drops those with a receiveTime (stripDeadJobs).
//   - pkg/scaling/executor/scale_jobs.go, RequestJobScale with the default scaling strategy
//     (defaultScalingStrategy.GetEffectiveMaxScale: maxScale - runningJobCount): each poll creates
//     min(queue length, maxReplicaCount) - (its Jobs not yet finished) new Jobs. Here a Job is an
//     ECS task started with RunTask (at most 10 per call), "not finished" is its task not STOPPED
//     (one ListTasks per poll, as KEDA lists its Jobs), and the pod runs the agent with --once
//     (AZP_ONCE=true), as KEDA's Azure Pipelines ScaledJob sample does.
//   - No parallel-job cap, no Retry-After handling (it only logs rate-limit headers), and scaling to
//     zero needs a placeholder agent registered by hand (KEDA's docs): the benchmark seeds one.
type kedaDriver struct {
	limit int
	w     workloadSpec

	cancel context.CancelFunc
	wg     sync.WaitGroup
	polls  int
	mu     sync.Mutex
	errs   []string
}

const kedaStartedBy = "keda-style"

func (d *kedaDriver) label() string { return "KEDA-style baseline" }
func (d *kedaDriver) max() int      { return d.limit }
func (d *kedaDriver) drains() bool  { return false }
func (d *kedaDriver) notes() string {
	return fmt.Sprintf("poll every %s (30 s), queue length = requests without a result (assigned and running ones included), launches min(queue, %d) − tasks not STOPPED, agents with `AZP_ONCE=true`, a seeded offline placeholder agent", d.w.wall(30*time.Second), d.limit)
}

func (d *kedaDriver) start(ctx context.Context, e *fleetEnv) error {
	if err := e.sim.SeedAgents(fleetPool, 1, "offline", time.Now(), "keda-placeholder-"); err != nil {
		return err
	}
	poolID, ok := e.sim.PoolID(fleetPool)
	if !ok {
		return fmt.Errorf("no pool %s", fleetPool)
	}
	ctx, d.cancel = context.WithCancel(context.Background())
	c := e.ecsClient()
	hc := &http.Client{Timeout: 30 * time.Second}
	url := fmt.Sprintf("%s/_apis/distributedtask/pools/%d/jobrequests?$top=%d", e.ctlOrg, poolID, 250)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(d.w.wall(30 * time.Second))
		defer t.Stop()
		for {
			d.poll(ctx, e, c, hc, url)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

func (d *kedaDriver) poll(ctx context.Context, e *fleetEnv, c *ecs.Client, hc *http.Client, url string) {
	d.polls++
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(":"+e.token)))
	resp, err := hc.Do(req)
	if err != nil {
		d.fail(err.Error())
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		d.fail(fmt.Sprintf("jobrequests: HTTP %d", resp.StatusCode))
		return
	}
	var jrs struct {
		Value []struct {
			Result *string `json:"result"`
		} `json:"value"`
	}
	if err := json.Unmarshal(body, &jrs); err != nil {
		d.fail(err.Error())
		return
	}
	queue := 0
	for _, j := range jrs.Value {
		if j.Result == nil {
			queue++
		}
	}
	running := 0
	var next *string
	for {
		// startedBy must be the only filter (API_ListTasks); the default status filter is RUNNING.
		out, err := c.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(fleetCluster), StartedBy: aws.String(kedaStartedBy), NextToken: next})
		if err != nil {
			d.fail(err.Error())
			return
		}
		running += len(out.TaskArns)
		if next = out.NextToken; next == nil {
			break
		}
	}
	// A task whose container already exited (desired STOPPED, not yet STOPPED) is a finished Job
	// for KEDA; ListTasks with desiredStatus RUNNING leaves it out, as Kubernetes counts a Job
	// finished once its pod completed.
	create := min(queue, d.limit) - running
	if create <= 0 {
		return
	}
	if _, err := e.runTasks(ctx, c, create, kedaStartedBy, map[string]string{"AZP_ONCE": "true", "AZP_AGENT_NAME_PREFIX": "keda-",
		"AZP_ECS_TASK_PROTECTION": "false"}, nil); err != nil {
		d.fail(err.Error())
	}
}

func (d *kedaDriver) errors() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.errs...)
}

func (d *kedaDriver) fail(err string) {
	d.mu.Lock()
	d.errs = append(d.errs, err)
	d.mu.Unlock()
}

func (d *kedaDriver) stop() {
	if d.cancel != nil {
		d.cancel()
		d.wg.Wait()
	}
}

// ---- fixed fleet ----

// fixedDriver is N always-on agents (persistent, one job at a time each), started and online before
// the workload begins; N is the workload's peak concurrency, so a job barely waits.
type fixedDriver struct {
	n int
	w workloadSpec
}

const fixedStartedBy = "fixed-fleet"

func (d *fixedDriver) label() string { return fmt.Sprintf("fixed fleet of %d", d.n) }
func (d *fixedDriver) max() int      { return d.n }
func (d *fixedDriver) drains() bool  { return false }
func (d *fixedDriver) notes() string {
	return fmt.Sprintf("%d tasks started with RunTask before the workload, persistent agents (`AZP_ONCE=false`), all online before the first job", d.n)
}

func (d *fixedDriver) start(ctx context.Context, e *fleetEnv) error {
	c := e.ecsClient()
	if _, err := e.runTasks(ctx, c, d.n, fixedStartedBy, map[string]string{"AZP_ONCE": "false", "AZP_AGENT_NAME_PREFIX": "fixed-",
		"AZP_ECS_TASK_PROTECTION": "false"}, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(d.w.wall(d.w.P) + 5*time.Minute)
	for time.Now().Before(deadline) {
		online := 0
		for _, a := range e.sim.Agents(fleetPool) {
			if a.Status == "online" {
				online++
			}
		}
		if online >= d.n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("fixed fleet: not all %d agents online in time", d.n)
}

func (d *fixedDriver) stop() {}

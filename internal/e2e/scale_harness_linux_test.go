package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/capture"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/ecssim"
)

// scaleEnv is a simulator, a local ECS whose tasks run the real entrypoint as PID 1 of their own
// PID namespaces, and the real `azp-entrypoint scale` as a child process.
type scaleEnv struct {
	*harness
	ecs      *ecssim.Server
	env      map[string]string // the scaler's environment
	max      int
	parallel int

	mu         sync.Mutex
	violations []string
	stoppedAt  map[string]time.Time
	everOnline map[string]bool
}

const scalePrefix = "scale-"

type scaleOpts struct {
	max, parallel int
	mode          string
	standby       string
	caps          string
	bootTimeout   string
	maxFailed     string
	pending       time.Duration // ECS PENDING → RUNNING (the image pull)
}

func newScaleEnv(t *testing.T, o scaleOpts) *scaleEnv {
	t.Helper()
	h := newHarness(t)
	if o.max == 0 {
		o.max = 10
	}
	if o.mode == "" {
		o.mode = "once"
	}
	if o.bootTimeout == "" {
		o.bootTimeout = "60s"
	}
	if o.maxFailed == "" {
		o.maxFailed = "5"
	}
	if o.pending == 0 {
		o.pending = 200 * time.Millisecond
	}
	if o.parallel > 0 {
		h.sim.SetParallelJobs(o.parallel)
	}
	se := &scaleEnv{harness: h, max: o.max, parallel: o.parallel, stoppedAt: map[string]time.Time{}, everOnline: map[string]bool{}}
	tasksDir := filepath.Join(h.root, "tasks")
	se.ecs = ecssim.New(ecssim.Options{
		Launcher: &ecssim.ExecLauncher{Binary: bins.entrypoint, Dir: tasksDir,
			TaskDirEnv: map[string]string{"AZP_AGENT_DIR": "azp/agent", "AZP_STATE_DIR": "state", "HOME": "home"}},
		Delays:   ecssim.Delays{Provisioning: 100 * time.Millisecond, Pending: o.pending, Deprovisioning: 100 * time.Millisecond},
		OnChange: se.check,
	})
	if _, err := se.ecs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(tasksDir, "*", "container.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("container %s:\n%s", filepath.Base(filepath.Dir(l)), tail(string(b), 3000))
			}
		}
		se.ecs.Close()
	})
	stop := 10
	env := []ecssim.KeyValuePair{}
	for k, v := range map[string]string{
		"AZP_URL": h.url, "AZP_TOKEN": h.token, "AZP_POOL": "Default", "AZP_AGENT_PLATFORM": platform,
		"AZP_LOG_FORMAT": "json", "AZP_STOP_TIMEOUT": "10s", "AZP_WORK_MIN_FREE": "1MiB", "AZP_AGENT_CACHE": filepath.Join(h.root, "agent-cache"),
		"FAKE_AGENT_SESSION_RETRY": "20s", "FAKE_AGENT_POLL_BACKOFF": "1s", "FAKE_AGENT_ORPHAN_SECONDS": "1", "FAKE_AGENT_UPDATER_POLL": "100ms",
	} {
		env = append(env, ecssim.KeyValuePair{Name: k, Value: v})
	}
	if _, err := se.ecs.RegisterTaskDefinition(ecssim.TaskDefinition{Family: "azp-agent", CPU: "1024", Memory: "2048",
		RuntimePlatform:      &ecssim.RuntimePlatform{CPUArchitecture: "X86_64", OperatingSystemFamily: "LINUX"},
		ContainerDefinitions: []ecssim.ContainerDefinition{{Name: "agent", Image: "azp-entrypoint:e2e", StopTimeout: &stop, Environment: env}}}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.root, "scaler")
	os.MkdirAll(dir, 0o755)
	se.env = map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": dir,
		"AZP_URL": h.url, "AZP_TOKEN": h.token, "AZP_POOL": "Default", "AZP_AGENT_NAME_PREFIX": scalePrefix,
		"AZP_LOG_FORMAT": "json", "AZP_LOG_LEVEL": "debug", "AZP_STATE_DIR": filepath.Join(dir, "state"),
		"AZP_SCALE_CLUSTER": "azp-agents", "AZP_SCALE_TASK_DEFINITION": "azp-agent", "AZP_SCALE_SUBNETS": "subnet-0e2e",
		"AZP_SCALE_SECURITY_GROUPS": "sg-0e2e", "AZP_SCALE_CAPACITY_PROVIDERS": "FARGATE_SPOT:3,FARGATE:1",
		"AZP_SCALE_INTERVAL": "300ms", "AZP_SCALE_BOOT_TIMEOUT": o.bootTimeout, "AZP_SCALE_IDLE_TIMEOUT": "20s",
		"AZP_SCALE_MAX": fmt.Sprint(o.max), "AZP_SCALE_AGENT_MODE": o.mode, "AZP_SCALE_STANDBY": o.standby,
		"AZP_SCALE_CAPABILITIES": o.caps, "AZP_SCALE_MAX_FAILED_LAUNCHES": o.maxFailed,
		"AWS_ENDPOINT_URL_ECS": se.ecs.URL(), "AWS_REGION": se.ecs.Region(), "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_ACCESS_KEY_ID": ecssim.DefaultAccessKeyID, "AWS_SECRET_ACCESS_KEY": ecssim.DefaultSecretAccessKey,
	}
	return se
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// check runs at every task status change, under the local ECS's lock: the instant's bookkeeping.
func (se *scaleEnv) check(tasks []ecssim.TaskView) {
	active, starting := 0, 0
	agents := map[string]sim.AgentView{}
	for _, a := range se.sim.Agents("Default") {
		agents[strings.ToLower(a.Name)] = a
	}
	worked := map[string]bool{} // agents that were assigned a job: online once, not starting
	for _, r := range se.sim.Requests() {
		if r.AgentName != "" {
			worked[strings.ToLower(r.AgentName)] = true
		}
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	for _, tk := range tasks {
		if tk.StartedBy != "azp-scale" || tk.LastStatus == ecssim.StatusStopped {
			continue
		}
		active++
		a := agents[strings.ToLower(agentName(tk.ID))]
		if tk.DesiredStatus == "STOPPED" {
			if _, seen := se.stoppedAt[tk.ID]; !seen {
				se.stoppedAt[tk.ID] = time.Now()
				// Never stop a busy task: the moment ECS records the stop, the agent holds no job.
				if tk.StopCode == "UserInitiated" && a.AssignedRequestID != 0 {
					se.violations = append(se.violations, fmt.Sprintf("task %s stopped while its agent runs request %d", tk.ID, a.AssignedRequestID))
				}
			}
			continue
		}
		name := strings.ToLower(agentName(tk.ID))
		if a.Status == "online" {
			se.everOnline[name] = true
		}
		if !se.everOnline[name] && !worked[name] {
			starting++
		}
	}
	if active > se.max {
		se.violations = append(se.violations, fmt.Sprintf("%d tasks not STOPPED, AZP_SCALE_MAX %d", active, se.max))
	}
	if se.parallel > 0 {
		busy := 0
		for _, a := range agents {
			if a.AssignedRequestID != 0 {
				busy++
			}
		}
		if starting+busy > se.parallel {
			se.violations = append(se.violations, fmt.Sprintf("%d starting + %d busy > %d parallel jobs", starting, busy, se.parallel))
		}
	}
}

func (se *scaleEnv) assertNoViolations() {
	se.t.Helper()
	se.mu.Lock()
	defer se.mu.Unlock()
	if len(se.violations) > 0 {
		se.t.Fatalf("bookkeeping violations:\n%s", strings.Join(se.violations, "\n"))
	}
}

func agentName(taskID string) string { return scalePrefix + taskID + "-agent" }

// scaler is one run of `azp-entrypoint scale`.
type scaler struct {
	se   *scaleEnv
	cmd  *exec.Cmd
	out  *capture.Buffer
	done chan struct{}
	code int
}

func (se *scaleEnv) startScaler() *scaler {
	se.t.Helper()
	cmd := exec.Command(bins.entrypoint, "scale")
	for k, v := range se.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	sc := &scaler{se: se, cmd: cmd, out: &capture.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = sc.out, sc.out
	if err := cmd.Start(); err != nil {
		se.t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		sc.code = cmd.ProcessState.ExitCode()
		close(sc.done)
	}()
	se.t.Cleanup(func() {
		select {
		case <-sc.done:
		default:
			cmd.Process.Kill()
			<-sc.done
		}
		if se.t.Failed() {
			se.t.Logf("scaler output:\n%s", tail(sc.out.String(), 20000))
		}
	})
	return sc
}

// stop sends SIGTERM and returns how long the scaler took to exit and its code.
func (sc *scaler) stop() (time.Duration, int) {
	start := time.Now()
	sc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sc.done:
	case <-time.After(30 * time.Second):
		sc.se.t.Fatal("the scaler did not exit within 30 s of SIGTERM")
	}
	return time.Since(start), sc.code
}

func (sc *scaler) kill() {
	sc.cmd.Process.Kill()
	<-sc.done
}

func (sc *scaler) records() []map[string]any {
	var out []map[string]any
	s := bufio.NewScanner(strings.NewReader(sc.out.String()))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var rec map[string]any
		if json.Unmarshal(s.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

func (sc *scaler) logs(substr string) []map[string]any {
	var out []map[string]any
	for _, r := range sc.records() {
		if m, _ := r["msg"].(string); strings.Contains(m, substr) {
			out = append(out, r)
		}
	}
	return out
}

// metric sums an EMF metric over the scaler's records.
func (sc *scaler) metric(name string) float64 {
	sum := 0.0
	for _, r := range sc.records() {
		if _, ok := r["_aws"]; !ok {
			continue
		}
		if v, ok := r[name].(float64); ok {
			sum += v
		}
	}
	return sum
}

func (sc *scaler) waitLog(substr string, timeout time.Duration) {
	sc.se.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if len(sc.logs(substr)) > 0 {
			return
		}
		select {
		case <-sc.done:
			sc.se.t.Fatalf("the scaler exited (code %d) before logging %q", sc.code, substr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	sc.se.t.Fatalf("no scaler log record containing %q within %s", substr, timeout)
}

// ourTasks lists the scaler's tasks, oldest first.
func (se *scaleEnv) ourTasks() []ecssim.TaskView {
	var out []ecssim.TaskView
	for _, tk := range se.ecs.Tasks() {
		if tk.StartedBy == "azp-scale" {
			out = append(out, tk)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

func (se *scaleEnv) waitTasks(what string, timeout time.Duration, cond func([]ecssim.TaskView) bool) []ecssim.TaskView {
	se.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	v, err := se.ecs.WaitTasks(ctx, func([]ecssim.TaskView) bool { return cond(se.ourTasks()) })
	if err != nil {
		se.t.Fatalf("%s: not within %s: %v\ntasks: %+v", what, timeout, err, summary(v))
	}
	return se.ourTasks()
}

func summary(ts []ecssim.TaskView) string {
	var b strings.Builder
	for _, t := range ts {
		fmt.Fprintf(&b, "\n  %s %s/%s %s %s", t.ID[:8], t.LastStatus, t.DesiredStatus, t.StopCode, t.StoppedReason)
	}
	return b.String()
}

func countActive(ts []ecssim.TaskView) int {
	n := 0
	for _, t := range ts {
		if t.LastStatus != ecssim.StatusStopped {
			n++
		}
	}
	return n
}

// waitQuiet waits until no task of ours is active and the pool holds only the placeholder.
func (se *scaleEnv) waitQuiet(timeout time.Duration) {
	se.t.Helper()
	se.waitTasks("every task STOPPED", timeout, func(ts []ecssim.TaskView) bool { return countActive(ts) == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		agents := se.sim.Agents("Default")
		if len(agents) == 1 && agents[0].Name == scalePrefix+"placeholder" && agents[0].Status == "offline" {
			return
		}
		select {
		case <-ctx.Done():
			se.t.Fatalf("pool not down to the placeholder within %s: %+v", timeout, agents)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

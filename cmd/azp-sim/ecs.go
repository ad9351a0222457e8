//go:build linux

package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/ecssim"
)

// ecsServe holds the `serve --ecs-*` flags: a local ECS control plane beside the simulator, whose
// tasks run the real azp-entrypoint as PID 1 of their own PID namespace (needs root).
type ecsServe struct {
	addr, entrypoint, dir, cluster, family, container string
	env                                               multiFlag
	provisioning, pending, deprovisioning             time.Duration
	stopTimeout                                       int
	srv                                               *ecssim.Server
}

func ecsFlags(fs *flag.FlagSet) *ecsServe {
	e := &ecsServe{}
	fs.StringVar(&e.addr, "ecs-addr", "", "also serve a local ECS control plane on this address (e.g. 127.0.0.1:4566); its tasks run the entrypoint in PID namespaces (root)")
	fs.StringVar(&e.entrypoint, "ecs-entrypoint", "", "azp-entrypoint binary the ECS tasks run (default: azp-entrypoint beside this binary, else on PATH)")
	fs.StringVar(&e.dir, "ecs-dir", "", "directory for the tasks' files (default: a temporary directory)")
	fs.StringVar(&e.cluster, "ecs-cluster", "azp-agents", "ECS cluster name")
	fs.StringVar(&e.family, "ecs-family", "azp-agent", "task definition family registered at start")
	fs.StringVar(&e.container, "ecs-container", "agent", "the task definition's container name")
	fs.Var(&e.env, "ecs-env", "KEY=VALUE in the task definition's container environment (repeatable); AZP_URL, AZP_POOL and AZP_TOKEN default to this simulator's")
	fs.DurationVar(&e.provisioning, "ecs-provisioning", 200*time.Millisecond, "PROVISIONING → PENDING delay")
	fs.DurationVar(&e.pending, "ecs-pending", 500*time.Millisecond, "PENDING → RUNNING delay (the image pull)")
	fs.DurationVar(&e.deprovisioning, "ecs-deprovisioning", 200*time.Millisecond, "DEPROVISIONING → STOPPED delay")
	fs.IntVar(&e.stopTimeout, "ecs-stop-timeout", 30, "the container's stopTimeout in seconds")
	return e
}

// mustStart starts the ECS endpoint when --ecs-addr is set and returns its stop function; a
// failure to start ends the process (the simulator is useless without what was asked for).
func (e *ecsServe) mustStart(s *sim.Server, tokens []string, pools []string) func() {
	if e.addr == "" {
		return func() {}
	}
	stop, err := e.start(s, tokens, pools)
	if err != nil {
		fmt.Fprintln(os.Stderr, "azp-sim: ECS:", err)
		os.Exit(1)
	}
	return stop
}

func (e *ecsServe) start(s *sim.Server, tokens []string, pools []string) (func(), error) {
	bin := e.entrypoint
	if bin == "" {
		self, _ := os.Executable()
		bin = filepath.Join(filepath.Dir(self), "azp-entrypoint")
		if _, err := os.Stat(bin); err != nil {
			if bin, err = exec.LookPath("azp-entrypoint"); err != nil {
				return nil, fmt.Errorf("no azp-entrypoint binary beside azp-sim or on PATH; set --ecs-entrypoint")
			}
		}
	}
	dir := e.dir
	cleanup := func() {}
	if dir == "" {
		d, err := os.MkdirTemp("", "azp-sim-ecs-")
		if err != nil {
			return nil, err
		}
		os.Chmod(d, 0o755)
		dir, cleanup = d, func() { os.RemoveAll(d) }
	}
	env := map[string]string{"AZP_URL": s.OrgURL(), "AZP_POOL": "Default", "AZP_LOG_FORMAT": "json", "AZP_WORK_MIN_FREE": "1MiB",
		"AZP_STOP_TIMEOUT": fmt.Sprintf("%ds", e.stopTimeout), "AZP_AGENT_CACHE": filepath.Join(dir, "agent-cache")}
	if len(pools) > 0 {
		env["AZP_POOL"] = pools[0]
	}
	if len(tokens) > 0 {
		env["AZP_TOKEN"] = tokens[0]
	} else if t := os.Getenv("AZP_SIM_TOKEN"); t != "" {
		env["AZP_TOKEN"] = t
	}
	for _, kv := range e.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--ecs-env %q: want KEY=VALUE", kv)
		}
		env[k] = v
	}
	e.srv = ecssim.New(ecssim.Options{Addr: e.addr, Clusters: []string{e.cluster},
		Launcher: &ecssim.ExecLauncher{Binary: bin, Dir: filepath.Join(dir, "tasks"),
			TaskDirEnv: map[string]string{"AZP_AGENT_DIR": "azp/agent", "AZP_STATE_DIR": "tmp/azp-entrypoint", "HOME": "home"}},
		Delays: ecssim.Delays{Provisioning: e.provisioning, Pending: e.pending, Deprovisioning: e.deprovisioning}})
	url, err := e.srv.Start()
	if err != nil {
		cleanup()
		return nil, err
	}
	var kvs []ecssim.KeyValuePair
	for k, v := range env {
		kvs = append(kvs, ecssim.KeyValuePair{Name: k, Value: v})
	}
	st := e.stopTimeout
	if _, err := e.srv.RegisterTaskDefinition(ecssim.TaskDefinition{Family: e.family, CPU: "1024", Memory: "2048",
		RuntimePlatform:      &ecssim.RuntimePlatform{CPUArchitecture: "X86_64", OperatingSystemFamily: "LINUX"},
		ContainerDefinitions: []ecssim.ContainerDefinition{{Name: e.container, Image: "azp-entrypoint:local", StopTimeout: &st, Environment: kvs}}}); err != nil {
		e.srv.Close()
		cleanup()
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "azp-sim: ECS endpoint %s (region %s, access key %s / %s), cluster %s, task definition %s, container %s\n",
		url, e.srv.Region(), ecssim.DefaultAccessKeyID, ecssim.DefaultSecretAccessKey, e.cluster, e.family, e.container)
	return func() { e.srv.Close(); cleanup() }, nil
}

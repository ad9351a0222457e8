//go:build linux

package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/containertest"
)

// TestECSContainerRunsInDocker applies the agent container's settings from the Terraform task
// definition (as this package evaluates terraform/*.tf: the JSON ECS receives) to a `docker run` of
// the image the container tests build: user, capabilities, init, stop timeout, health check,
// environment, mounts and the read-only root file system. What ECS will run is what runs here.
//
// Replaced, because they need AWS: AZP_SECRET_ID (Secrets Manager) becomes AZP_TOKEN_FILE, a
// root-owned 0600 file, and AZP_URL points at the simulator. The health check's exec-form command
// is given to `docker run --health-cmd`, which always runs it through the image's /bin/sh.
// Runs with `make test-containers`.
func TestECSContainerRunsInDocker(t *testing.T) {
	containertest.Require(t)
	c := loadModule(t, terraformDir(t)).plan(t, baseVars(map[string]any{"storage_mode": "bind"}))
	defs := containers(t, c)
	if len(defs) == 0 {
		t.Fatal("the task definition has no container")
	}
	d := defs[0]
	im := containertest.Build(t)
	n := containertest.NewNetwork(t, im)
	name := n.Name + "-ecs"

	tokenFile := filepath.Join(t.TempDir(), "azp-token")
	if err := os.WriteFile(tokenFile, []byte(containertest.SimToken), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "-d", "--name", name, "--network", n.Name, "--hostname", "ecs-agent",
		"-v", tokenFile + ":/run/secrets/azp_token:ro"}
	if d.User != "" {
		args = append(args, "--user", d.User)
	}
	if lp := d.LinuxParameters; lp != nil {
		if lp.Capabilities != nil {
			for _, c := range lp.Capabilities.Drop {
				args = append(args, "--cap-drop", c)
			}
			for _, c := range lp.Capabilities.Add {
				args = append(args, "--cap-add", c)
			}
		}
		if lp.InitProcessEnabled != nil && *lp.InitProcessEnabled {
			args = append(args, "--init")
		}
	}
	stop := 30
	if d.StopTimeout != nil {
		stop = *d.StopTimeout
		args = append(args, "--stop-timeout", fmt.Sprint(stop))
	}
	if hc := d.HealthCheck; hc != nil {
		if len(hc.Command) < 2 || hc.Command[0] != "CMD" {
			t.Fatalf("healthCheck.command %v: want [CMD, ...]", hc.Command)
		}
		args = append(args, "--health-cmd", strings.Join(hc.Command[1:], " "),
			"--health-interval", fmt.Sprintf("%ds", hc.Interval), "--health-timeout", fmt.Sprintf("%ds", hc.Timeout),
			"--health-retries", fmt.Sprint(hc.Retries), "--health-start-period", fmt.Sprintf("%ds", hc.StartPeriod))
	}
	env := d.env()
	if _, ok := env["AZP_SECRET_ID"]; !ok {
		t.Errorf("the task definition has no AZP_SECRET_ID: where does the agent's token come from?")
	}
	delete(env, "AZP_SECRET_ID")
	env["AZP_TOKEN_FILE"] = "/run/secrets/azp_token"
	env["AZP_URL"] = n.URL
	for k, v := range env {
		args = append(args, "-e", k+"="+v)
	}
	for _, m := range d.MountPoints {
		vol := name + "-" + m.SourceVolume
		t.Cleanup(func() { containertest.Try("volume", "rm", vol) })
		spec := vol + ":" + m.ContainerPath
		if m.ReadOnly {
			spec += ":ro"
		}
		args = append(args, "-v", spec)
	}
	if d.ReadonlyRootFilesystem != nil && *d.ReadonlyRootFilesystem {
		args = append(args, "--read-only")
	}
	args = append(args, im.Agent)
	containertest.Cleanup(t, name)
	t.Logf("docker %s", strings.Join(args, " "))
	containertest.Must(t, args...)

	// The agent registers (its name derives from the hostname outside ECS) and is online.
	var agent string
	containertest.Eventually(t, 4*time.Minute, "the agent online", func() error {
		all, err := n.Sim.Agents("Default")
		if err != nil {
			return err
		}
		if len(all) != 1 || all[0].Status != "online" {
			return fmt.Errorf("agents %+v", all)
		}
		agent = all[0].Name
		return nil
	})
	// The task definition's health check, run by docker, passes.
	if d.HealthCheck != nil {
		containertest.Eventually(t, time.Duration(d.HealthCheck.StartPeriod+3*d.HealthCheck.Interval)*time.Second, "healthy", func() error {
			if _, _, h := containertest.State(t, name); h != "healthy" {
				return fmt.Errorf("health %s", h)
			}
			return nil
		})
	}
	id := n.Sim.Queue(t, "--pool", "Default", "--name", "ecs settings", "--duration", "2s")
	if r := n.Sim.WaitFinished(t, id, 2*time.Minute); r.Result != "succeeded" || r.AgentName != agent {
		t.Errorf("job: %+v, want succeeded on %s", r, agent)
	}
	// A job runs as the agent user when the container starts as root (decision 1).
	if d.User == "0" || d.User == "0:0" || d.User == "" {
		out, err := containertest.Try("exec", "-u", "0", name, "bash", "-c",
			`for s in /proc/[0-9]*/status; do n=$(awk '/^Name:/{print $2}' "$s"); case "$n" in Agent.*) awk '/^Uid:/{print $2}' "$s";; esac; done`)
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("no agent process: %v %q", err, out)
		}
		for _, uid := range strings.Fields(out) {
			if uid != "1000" {
				t.Errorf("an agent process runs as uid %s, want the agent user 1000", uid)
			}
		}
	}
	// The stop ECS sends: SIGTERM, SIGKILL after stopTimeout. Exit 0 means it finished inside.
	containertest.Must(t, "stop", name)
	if status, code, _ := containertest.State(t, name); status != "exited" || code != 0 {
		t.Errorf("after docker stop (stop timeout %d s): %s, exit code %d; want exit 0", stop, status, code)
	}
	if a, err := n.Sim.Agent("Default", agent); err != nil || a != nil {
		t.Errorf("%s still registered after the stop: %+v %v", agent, a, err)
	}
}

package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/ecssim"
)

// `check` for a scaler checks the settings, the server, the pool, the cluster and the task
// definition with its container, through the real clients against the simulator and local ECS.
func TestScaleCheck(t *testing.T) {
	s := sim.New(sim.Options{Tokens: map[string]string{"scale-check-pat": sim.ScopeManage}})
	url, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e := ecssim.New(ecssim.Options{})
	if _, err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.RegisterTaskDefinition(ecssim.TaskDefinition{Family: "azp-agent", ContainerDefinitions: []ecssim.ContainerDefinition{{Name: "agent"}}}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ENDPOINT_URL_ECS", e.URL())
	t.Setenv("AWS_REGION", e.Region())
	t.Setenv("AWS_ACCESS_KEY_ID", ecssim.DefaultAccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", ecssim.DefaultSecretAccessKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	base := map[string]string{"AZP_URL": url, "AZP_TOKEN": "scale-check-pat", "AZP_AGENT_NAME_PREFIX": "scale-", "AZP_LOG_FORMAT": "json",
		"AZP_SCALE_CLUSTER": "azp-agents", "AZP_SCALE_TASK_DEFINITION": "azp-agent", "AZP_SCALE_SUBNETS": "subnet-1", "AZP_SCALE_CAPABILITIES": "docker"}
	for _, tc := range []struct {
		name string
		args []string
		set  map[string]string
		code int
		out  string
	}{
		{name: "good", args: []string{"check"}, code: 0, out: "has container agent"},
		{name: "scale --check", args: []string{"scale", "--check"}, code: 0, out: "ok   ecs"},
		{name: "no such container", args: []string{"check"}, set: map[string]string{"AZP_SCALE_CONTAINER": "worker"}, code: 2, out: "AZP_SCALE_CONTAINER"},
		{name: "no such cluster", args: []string{"check"}, set: map[string]string{"AZP_SCALE_CLUSTER": "gone"}, code: 2, out: "AZP_SCALE_CLUSTER"},
		{name: "no such task definition", args: []string{"check"}, set: map[string]string{"AZP_SCALE_TASK_DEFINITION": "nope:3"}, code: 2, out: "AZP_SCALE_TASK_DEFINITION"},
		{name: "unknown pool", args: []string{"check"}, set: map[string]string{"AZP_POOL": "Nope"}, code: 2, out: "AZP_POOL"},
		{name: "bad capability", args: []string{"check"}, set: map[string]string{"AZP_SCALE_CAPABILITIES": "Agent.OS=Windows"}, code: 2, out: "AZP_SCALE_CAPABILITIES"},
		{name: "no prefix", args: []string{"check"}, set: map[string]string{"AZP_AGENT_NAME_PREFIX": ""}, code: 2, out: "AZP_AGENT_NAME_PREFIX"},
		{name: "flags select the scale check", args: []string{"check", "--scale-cluster", "gone"}, set: map[string]string{"AZP_SCALE_CLUSTER": ""}, code: 2, out: "AZP_SCALE_CLUSTER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tc.set {
				env[k] = v
			}
			var out, errb bytes.Buffer
			code := MainEnv(tc.args, &out, &errb, envOf(env))
			if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.out) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s\n%s", code, tc.code, tc.out, out.String(), errb.String())
			}
		})
	}
	// A wrong AWS key is an authorisation failure: exit 3.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	var out bytes.Buffer
	if code := MainEnv([]string{"check"}, &out, &out, envOf(base)); code != 3 {
		t.Fatalf("wrong AWS key: exit %d\n%s", code, out.String())
	}
}

// `health` in a scaler container: 0 while the loop ran within three minutes, 1 after.
func TestScaleHealth(t *testing.T) {
	dir := t.TempDir()
	write := func(at time.Time) {
		os.WriteFile(filepath.Join(dir, "scale.json"), []byte(`{"lastPass":"`+at.UTC().Format(time.RFC3339Nano)+`"}`), 0o644)
	}
	write(time.Now())
	var out bytes.Buffer
	if code := MainEnv([]string{"health", "--state-dir", dir}, &out, &out, envOf(nil)); code != 0 || !strings.Contains(out.String(), "scaler loop ran") {
		t.Fatalf("fresh: %d %s", code, out.String())
	}
	write(time.Now().Add(-4 * time.Minute))
	out.Reset()
	if code := MainEnv([]string{"health", "--state-dir", dir}, &out, &out, envOf(nil)); code != 1 {
		t.Fatalf("stale: %d %s", code, out.String())
	}
}

package deploytest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
)

var agentServices = []string{"azp-agent-1", "azp-agent-2"}

// composeKnobs are compose-level variables that are not settings of the binary:
// they only choose the image, the build and the token file on the host.
var composeKnobs = []string{"AGENT_IMAGE", "AGENT_VERSION", "PAT_FILE", "SIM_IMAGE", "SIM_PORT"}

// loadCompose loads compose.yaml the way `docker compose` does (interpolation,
// schema validation, profiles), with exactly env as the environment so the
// result does not depend on the machine's variables or a local .env.
func loadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "compose.yaml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(envList),
		cli.WithProfiles(profiles),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml does not load (env %v, profiles %v): %v", env, profiles, err)
	}
	return p
}

func serviceEnv(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			t.Errorf("service %s: %s has no value (it would be taken from the host)", s.Name, k)
			continue
		}
		out[k] = *v
	}
	return out
}

func TestComposeAgents(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"defaults", nil},
		{"from .env", map[string]string{"AZP_URL": "https://dev.azure.com/acme", "AZP_POOL": "Linux", "AZP_STOP_TIMEOUT": "45s", "PAT_FILE": "./image/demo/sim-token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := loadCompose(t, tc.env)
			if _, ok := p.Services["azp-sim"]; ok {
				t.Errorf("azp-sim must only run with --profile demo")
			}
			var workVolume string
			for _, name := range agentServices {
				s, ok := p.Services[name]
				if !ok {
					t.Fatalf("service %s is missing", name)
				}
				env := serviceEnv(t, s)
				checkEnvironment(t, "compose "+name, env)

				if s.Init == nil || *s.Init {
					t.Errorf("%s: init must be false (azp-entrypoint is PID 1)", name)
				}
				if s.StopGracePeriod == nil {
					t.Fatalf("%s: no stop_grace_period", name)
				}
				st, ok := env["AZP_STOP_TIMEOUT"]
				if !ok {
					t.Fatalf("%s: AZP_STOP_TIMEOUT not set", name)
				}
				if got, want := time.Duration(*s.StopGracePeriod), parseStopTimeout(t, name, st); got != want {
					t.Errorf("%s: stop_grace_period %v != AZP_STOP_TIMEOUT %v", name, got, want)
				}
				if want, ok := tc.env["AZP_STOP_TIMEOUT"]; ok && st != want {
					t.Errorf("%s: AZP_STOP_TIMEOUT from .env not used: %s", name, st)
				}
				if s.StopSignal != "" && s.StopSignal != "SIGTERM" {
					t.Errorf("%s: stop_signal %s", name, s.StopSignal)
				}
				if s.HealthCheck == nil || !equalStrings(s.HealthCheck.Test, healthCommand) {
					t.Errorf("%s: healthcheck.test must be %q", name, healthCommand)
				}
				// The token file must be unreadable by jobs: the entrypoint starts as root, reads
				// it, and runs the agent as `agent`, keeping only the capabilities for that.
				if !isRootUser(s.User) || s.Environment["AZP_RUN_AS"] == nil || *s.Environment["AZP_RUN_AS"] != "agent" {
					t.Errorf("%s: must start as root with AZP_RUN_AS=agent (the token file stays root's)", name)
				}
				allowedCaps := []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "KILL"}
				if !slices.Contains(s.CapDrop, "ALL") {
					t.Errorf("%s: cap_drop ALL", name)
				}
				for _, c := range s.CapAdd {
					if !slices.Contains(allowedCaps, c) {
						t.Errorf("%s: cap_add %s beyond what dropping to the agent user needs", name, c)
					}
				}
				// Each one is needed (decision 1): without it the hand-over to `agent` fails.
				for _, c := range allowedCaps {
					if !slices.Contains(s.CapAdd, c) {
						t.Errorf("%s: cap_add lacks %s, which the entrypoint needs to hand over to the agent user", name, c)
					}
				}
				// Read-only root file system; /tmp a tmpfs; the agent directory a volume.
				if !s.ReadOnly || !slices.Contains([]string(s.Tmpfs), "/tmp") {
					t.Errorf("%s: read_only: true with a tmpfs at /tmp", name)
				}
				agentDir := false
				for _, v := range s.Volumes {
					agentDir = agentDir || v.Target == "/azp/agent"
				}
				if !agentDir {
					t.Errorf("%s: the agent directory /azp/agent must be a volume (the root file system is read-only)", name)
				}
				if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
					t.Errorf("%s: security_opt no-new-privileges:true", name)
				}
				if s.Privileged {
					t.Errorf("%s: privileged", name)
				}
				if s.Build == nil || s.Build.Target != "runtime" || filepath.ToSlash(s.Build.Dockerfile) != "image/Dockerfile" && !strings.HasSuffix(filepath.ToSlash(s.Build.Dockerfile), "/image/Dockerfile") {
					t.Errorf("%s: build from image/Dockerfile target runtime, got %+v", name, s.Build)
				}

				// Credentials only through the token file (a compose secret).
				for _, k := range []string{"AZP_TOKEN", "AZP_CLIENTSECRET"} {
					if _, ok := env[k]; ok {
						t.Errorf("%s: %s in the environment shows in docker inspect; use the azp_token secret", name, k)
					}
				}
				if env["AZP_TOKEN_FILE"] != "/run/secrets/azp_token" || len(s.Secrets) != 1 || s.Secrets[0].Source != "azp_token" {
					t.Errorf("%s: AZP_TOKEN_FILE must be the azp_token secret at /run/secrets/azp_token", name)
				}

				// One shared work volume, leased per slot.
				if env["AZP_WORK_SHARED"] != "true" {
					t.Errorf("%s: AZP_WORK_SHARED must be true on the shared volume", name)
				}
				found := false
				for _, v := range s.Volumes {
					if v.Target == env["AZP_WORK"] {
						found = true
						if v.Type != types.VolumeTypeVolume {
							t.Errorf("%s: the work volume must be a named volume", name)
						}
						if workVolume == "" {
							workVolume = v.Source
						} else if v.Source != workVolume {
							t.Errorf("%s: work volume %s, the other agent uses %s", name, v.Source, workVolume)
						}
					}
				}
				if !found {
					t.Errorf("%s: no volume mounted at AZP_WORK=%q", name, env["AZP_WORK"])
				}
				if env["AZP_WORK"] != dockerfileVolume(t) {
					t.Errorf("%s: AZP_WORK=%s is not the image's VOLUME (which gives it the agent's ownership)", name, env["AZP_WORK"])
				}
				if env["AZP_URL"] == "" || env["AZP_POOL"] == "" {
					t.Errorf("%s: AZP_URL and AZP_POOL must be set", name)
				}
				if u, ok := tc.env["AZP_URL"]; ok && env["AZP_URL"] != u {
					t.Errorf("%s: AZP_URL from .env not used", name)
				}
			}
			if _, ok := p.Volumes[workVolume]; !ok {
				t.Errorf("work volume %q is not a declared named volume", workVolume)
			}
			if h1, h2 := p.Services["azp-agent-1"].Hostname, p.Services["azp-agent-2"].Hostname; h1 == "" || h1 == h2 {
				t.Errorf("agents need distinct hostnames (the default agent name derives from it): %q %q", h1, h2)
			}
		})
	}
}

func TestComposeDemo(t *testing.T) {
	p := loadCompose(t, nil, "demo")
	sim, ok := p.Services["azp-sim"]
	if !ok {
		t.Fatalf("--profile demo must start azp-sim")
	}
	if !slices.Equal(sim.Profiles, []string{"demo"}) {
		t.Errorf("azp-sim profiles = %v, want [demo]", sim.Profiles)
	}
	if sim.Build == nil || sim.Build.Target != "sim" {
		t.Errorf("azp-sim must build image/Dockerfile target sim")
	}
	cmd := []string(sim.Command)
	if len(cmd) < 1 || cmd[0] != "serve" {
		t.Fatalf("azp-sim command must be `serve ...`, got %v", cmd)
	}
	flag := func(name string) string {
		for i := 0; i+1 < len(cmd); i++ {
			if cmd[i] == name {
				return cmd[i+1]
			}
		}
		return ""
	}
	if flag("--addr") != "0.0.0.0:8080" || flag("--org") == "" {
		t.Errorf("azp-sim must listen on 0.0.0.0:8080 with an --org: %v", cmd)
	}
	token, err := os.ReadFile(filepath.Join(repoRoot(t), "image", "demo", "sim-token"))
	if err != nil {
		t.Fatal(err)
	}
	if flag("--token") != strings.TrimSpace(string(token)) {
		t.Errorf("azp-sim --token %q must equal image/demo/sim-token (the agents' default token file)", flag("--token"))
	}
	sec, ok := p.Secrets["azp_token"]
	if !ok || filepath.Base(sec.File) != "sim-token" {
		t.Errorf("without PAT_FILE the azp_token secret must be image/demo/sim-token, got %+v", sec)
	}
	for _, name := range agentServices {
		s := p.Services[name]
		env := serviceEnv(t, s)
		if want := "http://azp-sim:8080/" + flag("--org"); env["AZP_URL"] != want {
			t.Errorf("%s: AZP_URL=%s, want the simulator %s when AZP_URL is unset", name, env["AZP_URL"], want)
		}
		dep, ok := s.DependsOn["azp-sim"]
		if !ok || dep.Required {
			t.Errorf("%s: depends_on azp-sim with required: false (the sim runs only in the demo)", name)
		}
	}
	for _, port := range sim.Ports {
		if port.HostIP != "127.0.0.1" {
			t.Errorf("azp-sim publishes %d on %q: bind it to 127.0.0.1", port.Target, port.HostIP)
		}
	}
}

var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// TestComposeVariables keeps compose.yaml, .env.example and the binary in step:
// every interpolated AZP_* name is a setting, every other one is a documented
// compose knob, and .env.example names them all and nothing else.
func TestComposeVariables(t *testing.T) {
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defs := settings(t)
	used := map[string]bool{}
	for _, m := range composeVar.FindAllStringSubmatch(string(src), -1) {
		used[m[1]] = true
	}
	for v := range used {
		if _, ok := defs[v]; ok {
			continue
		}
		if !slices.Contains(composeKnobs, v) {
			t.Errorf("compose.yaml uses ${%s}: neither a setting of azp-entrypoint nor a documented compose knob", v)
		}
	}
	example, err := dotenv.Read(filepath.Join(root, ".env.example"))
	if err != nil {
		t.Fatalf(".env.example: %v", err)
	}
	for k, v := range example {
		if !used[k] {
			t.Errorf(".env.example sets %s, which compose.yaml never reads", k)
		}
		if d, ok := defs[k]; ok && d.Secret && v != "" {
			t.Errorf(".env.example shows a value for the secret %s", k)
		}
		if secretName.MatchString(k) && !strings.HasSuffix(k, "_FILE") {
			t.Errorf(".env.example must not carry credentials (%s): use PAT_FILE", k)
		}
	}
	for v := range used {
		if _, ok := example[v]; !ok {
			t.Errorf("compose.yaml reads ${%s}, which .env.example does not document", v)
		}
	}
	// .env.example loads: its values are valid input for compose.yaml.
	example["PAT_FILE"] = "./image/demo/sim-token" // must exist on disk for the secret
	p := loadCompose(t, example)
	for _, name := range agentServices {
		env := serviceEnv(t, p.Services[name])
		if env["AZP_URL"] != example["AZP_URL"] {
			t.Errorf("%s: AZP_URL from .env.example not applied", name)
		}
	}
}

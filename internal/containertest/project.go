//go:build linux

package containertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Project is compose.yaml started as a user would: `docker compose --profile demo up -d --no-build`
// with images built by `docker buildx build --load`, under a project name of its own.
type Project struct {
	Name  string
	Root  string
	Env   []string // the variables compose interpolates (and nothing from the host's AZP_*)
	Token string   // content of PAT_FILE
}

// NewProject prepares a compose project for im: a root-owned 0600 token file (as .env.example
// tells users to make it), a free loopback port for the simulator, and the given extra variables.
// The project is taken down with its volumes when the test ends.
func NewProject(t testing.TB, im Images, extra ...string) *Project {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "azp-token")
	if err := os.WriteFile(tokenFile, []byte(SimToken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tokenFile, 0, 0); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, "empty.env")
	if err := os.WriteFile(envFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	p := &Project{Name: "azpct" + hex.EncodeToString(suffix), Root: im.Root, Token: SimToken}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AZP_") || strings.HasPrefix(k, "COMPOSE_") || k == "AGENT_IMAGE" || k == "AGENT_VERSION" ||
			k == "PAT_FILE" || k == "SIM_IMAGE" || k == "SIM_PORT" {
			continue
		}
		p.Env = append(p.Env, kv)
	}
	p.Env = append(p.Env,
		"COMPOSE_PROJECT_NAME="+p.Name,
		"COMPOSE_ENV_FILES="+envFile,
		"AGENT_IMAGE="+im.Agent,
		"SIM_IMAGE="+im.Sim,
		"SIM_PORT="+freePort(t),
		"PAT_FILE="+tokenFile,
	)
	p.Env = append(p.Env, extra...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.Compose("--profile", "demo", "logs", "--no-color", "--tail", "80")
			t.Logf("compose logs:\n%s", out)
		}
		if _, err := p.Compose("--profile", "demo", "down", "--volumes", "--remove-orphans", "--timeout", "5"); err != nil {
			t.Logf("compose down: %v", err)
		}
	})
	return p
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// Compose runs `docker compose <args>` in the repository root with the project's variables.
func (p *Project) Compose(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return DockerIn(ctx, p.Root, p.Env, append([]string{"compose", "-f", "compose.yaml"}, args...)...)
}

// Container returns the id of the service's container.
func (p *Project) Container(t testing.TB, service string) string {
	t.Helper()
	out, err := p.Compose("--profile", "demo", "ps", "--all", "-q", service)
	if err != nil {
		t.Fatal(err)
	}
	if out == "" {
		t.Fatalf("no container for service %s", service)
	}
	return strings.Fields(out)[0]
}

// Inspect decodes `docker inspect` of a container or image.
func Inspect(t testing.TB, ref string) map[string]any {
	t.Helper()
	out := Must(t, "inspect", ref)
	var v []map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 {
		t.Fatalf("docker inspect %s: %v", ref, err)
	}
	return v[0]
}

// Field walks a decoded JSON object along keys.
func Field(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// State returns the container's State.Status, State.ExitCode and State.Health.Status.
func State(t testing.TB, c string) (status string, exitCode int, health string) {
	t.Helper()
	out := Must(t, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", c)
	if _, err := fmt.Sscan(out, &status, &exitCode, &health); err != nil {
		t.Fatalf("inspect %s: %q", c, out)
	}
	return status, exitCode, health
}

// AgentFile decodes the agent's .agent file (read as root, as an operator would).
func AgentFile(c string) (map[string]any, error) {
	out, err := Try("exec", "-u", "0", c, "cat", "/azp/agent/.agent")
	if err != nil {
		return nil, err
	}
	var v map[string]any
	// The real agent writes .agent with a UTF-8 BOM.
	if err := json.Unmarshal([]byte(strings.TrimPrefix(out, "\uFEFF")), &v); err != nil {
		return nil, fmt.Errorf(".agent: %w: %q", err, out)
	}
	return v, nil
}

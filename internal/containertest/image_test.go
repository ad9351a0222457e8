//go:build linux

package containertest

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRunOnce: `docker run --rm -e AZP_URL -e AZP_TOKEN -e AZP_POOL IMAGE --once`, as with the
// Microsoft start.sh: the agent registers, runs one job, deregisters and the container exits 0.
func TestRunOnce(t *testing.T) {
	t.Parallel()
	im := Build(t)
	n := NewNetwork(t, im)
	name := n.Name + "-once"
	Cleanup(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "run", "--rm", "--name", name, "--network", n.Name,
		"-e", "AZP_URL="+n.URL, "-e", "AZP_TOKEN="+SimToken, "-e", "AZP_POOL="+pool,
		"-e", "AZP_AGENT_NAME=once-agent", "-e", "AZP_STOP_TIMEOUT=30s",
		im.Agent, "--once")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	n.Sim.WaitOnline(t, "once-agent")
	id := n.Sim.Queue(t, "--pool", pool, "--name", "once", "--duration", "2s")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("docker run --rm IMAGE --once: %v (want exit 0)\n%s", err, out.String())
		}
	case <-ctx.Done():
		t.Fatalf("the --once container did not exit:\n%s", out.String())
	}
	if r, err := n.Sim.Job(id); err != nil || r.Result != "succeeded" || r.AgentName != "once-agent" {
		t.Errorf("job: %+v %v, want succeeded on once-agent", r, err)
	}
	if a, err := n.Sim.Agent(pool, "once-agent"); err != nil || a != nil {
		t.Errorf("once-agent still registered after exit 0: %+v %v", a, err)
	}
}

// TestImageContent: the built image as `docker inspect`, `docker history`, `docker save` and
// `docker export` show it: started as root with AZP_RUN_AS=agent, the health check and the stop
// signal in place, no secret in any layer, history entry or label, /azp owned as decided, no
// setuid/setgid bit and no file capability.
func TestImageContent(t *testing.T) {
	t.Parallel()
	im := Build(t)
	cfg := Inspect(t, im.Agent)["Config"]
	if u, _ := Field(cfg, "User").(string); !isRoot(u) {
		t.Errorf("image user %q: the entrypoint starts as root (decision 1) and drops the agent to AZP_RUN_AS", u)
	}
	env := map[string]string{}
	for _, e := range asStrings(Field(cfg, "Env")) {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	if env["AZP_RUN_AS"] != "agent" {
		t.Errorf("image environment AZP_RUN_AS=%q, want agent", env["AZP_RUN_AS"])
	}
	if hc := asStrings(Field(cfg, "Healthcheck", "Test")); !slices.Equal(hc, []string{"CMD", "/usr/local/bin/azp-entrypoint", "health"}) {
		t.Errorf("HEALTHCHECK %v, want CMD azp-entrypoint health", hc)
	}
	if s, _ := Field(cfg, "StopSignal").(string); s != "SIGTERM" {
		t.Errorf("STOPSIGNAL %q", s)
	}
	if ep := asStrings(Field(cfg, "Entrypoint")); !slices.Equal(ep, []string{"/usr/local/bin/azp-entrypoint"}) {
		t.Errorf("ENTRYPOINT %v", ep)
	}
	if cmd := asStrings(Field(cfg, "Cmd")); len(cmd) != 0 {
		t.Errorf("CMD %v: `docker run IMAGE --once` passes flags to the entrypoint", cmd)
	}

	// History and labels: no token, no credential-looking assignment.
	secretish := regexp.MustCompile(`(?i)(AZP_TOKEN|AZP_CLIENTSECRET|PASSWORD|SECRET_ACCESS_KEY)=\S`)
	hist := Must(t, "history", "--no-trunc", "--format", "{{.CreatedBy}}", im.Agent)
	if strings.Contains(hist, SimToken) || secretish.MatchString(hist) {
		t.Errorf("image history carries a secret:\n%s", hist)
	}
	for k, v := range asMap(Field(cfg, "Labels")) {
		if s, _ := v.(string); strings.Contains(s, SimToken) || secretish.MatchString(k+"="+s) {
			t.Errorf("label %s=%v", k, v)
		}
	}
	for k, v := range env {
		if strings.Contains(v, SimToken) || secretName.MatchString(k) {
			t.Errorf("image environment %s", k)
		}
	}

	// Every layer: no secret file and no token.
	checkLayers(t, im.Agent)

	// The file system the container starts with.
	c := Must(t, "create", im.Agent)
	defer Try("rm", "-v", c)
	files := exportFiles(t, c)
	type own struct {
		uid, gid int
		mode     int64 // permission bits
	}
	want := map[string]own{
		"azp":                          {0, 0, 0o755},
		"azp/agent":                    {0, 0, 0o755},
		"azp/agent/bin":                {0, 0, 0o755},
		"azp/agent/bin/Agent.Listener": {0, 0, 0o755},
		"azp/agent/.azp-package.json":  {0, 0, -1},
		"azp/agent/_diag":              {1000, 1000, -1},
		"azp/agent/_work":              {1000, 1000, -1},
		"azp/work":                     {1000, 1000, -1},
		"azp/cache":                    {0, 0, -1},
		"usr/local/bin/azp-entrypoint": {0, 0, 0o755},
	}
	for p, w := range want {
		h, ok := files[p]
		if !ok {
			t.Errorf("/%s missing from the image", p)
			continue
		}
		if h.Uid != w.uid || h.Gid != w.gid || (w.mode >= 0 && h.Mode&0o7777 != w.mode) {
			t.Errorf("/%s: %d:%d %o, want %d:%d %o", p, h.Uid, h.Gid, h.Mode&0o7777, w.uid, w.gid, w.mode)
		}
	}
	for p, h := range files {
		if strings.HasPrefix(p, "azp/agent/") && !strings.HasPrefix(p, "azp/agent/_diag") && !strings.HasPrefix(p, "azp/agent/_work") && h.Uid != 0 {
			t.Errorf("/%s belongs to uid %d: the agent tree is root's (a job could change it)", p, h.Uid)
		}
		if h.Typeflag == tar.TypeReg && h.Mode&0o6000 != 0 {
			t.Errorf("/%s has the setuid/setgid bit (%o)", p, h.Mode&0o7777)
		}
		if _, ok := h.PAXRecords["SCHILY.xattr.security.capability"]; ok {
			t.Errorf("/%s carries file capabilities", p)
		}
	}
	for _, p := range []string{"bin/bash", "bin/ping", "usr/bin/git"} {
		if _, ok := files[p]; !ok {
			if _, ok := files["usr/"+p]; !ok {
				t.Errorf("/%s missing: self-update and script steps need it", p)
			}
		}
	}
}

// TestHealthAnswersFast: docker's own health check, with a 1 s timeout and a short interval, finds
// a running agent healthy: `azp-entrypoint health` answers well inside a second.
func TestHealthAnswersFast(t *testing.T) {
	t.Parallel()
	im := Build(t)
	n := NewNetwork(t, im)
	name := n.Name + "-health"
	Cleanup(t, name)
	Must(t, "run", "-d", "--name", name, "--network", n.Name,
		"--health-timeout", "1s", "--health-interval", "2s", "--health-retries", "1",
		"-e", "AZP_URL="+n.URL, "-e", "AZP_TOKEN="+SimToken, "-e", "AZP_AGENT_NAME=health-agent", im.Agent)
	n.Sim.WaitOnline(t, "health-agent")
	Eventually(t, 2*time.Minute, "healthy with a 1 s health timeout", func() error {
		if _, _, h := State(t, name); h != "healthy" {
			return fmt.Errorf("health %s", h)
		}
		return nil
	})
	// For the record: how long docker saw the probes take.
	var log []struct{ Start, End time.Time }
	out := Must(t, "inspect", "--format", "{{json .State.Health.Log}}", name)
	if err := json.Unmarshal([]byte(out), &log); err == nil {
		for _, l := range log {
			t.Logf("health probe took %s", l.End.Sub(l.Start).Round(time.Millisecond))
		}
	}
}

var secretName = regexp.MustCompile(`(?i)(token$|secret|passw|credential|private|apikey|access_key)`)

func isRoot(u string) bool {
	name, _, _ := strings.Cut(u, ":")
	return name == "" || name == "0" || name == "root"
}

func asStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// exportFiles reads `docker export` of a container: the merged file system, with owners, modes
// and extended attributes.
func exportFiles(t *testing.T, c string) map[string]*tar.Header {
	t.Helper()
	cmd := exec.Command("docker", "export", c)
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(path.Clean(h.Name), "/")] = h
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	return files
}

// checkLayers reads `docker save` and every layer in it: no file that holds secrets (.env,
// .secrets, keys, Terraform state, agent registrations) and no byte sequence of the token.
func checkLayers(t *testing.T, ref string) {
	t.Helper()
	cmd := exec.Command("docker", "save", ref)
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	bad := regexp.MustCompile(`(^|/)(\.env|\.secrets|[^/]*\.pem|[^/]*\.key|[^/]*\.tfstate[^/]*|[^/]*\.tfvars|\.credentials|\.credentials_rsaparams|\.agent|\.git)(/|$)`)
	outer := tar.NewReader(r)
	layers := 0
	for {
		h, err := outer.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(outer)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), SimToken) {
			t.Errorf("docker save: %s contains the token", h.Name)
		}
		if !strings.HasSuffix(h.Name, "layer.tar") && !strings.HasPrefix(h.Name, "blobs/") {
			continue
		}
		inner := tar.NewReader(strings.NewReader(string(data)))
		for {
			ih, err := inner.Next()
			if err != nil {
				break
			}
			if bad.MatchString(ih.Name) && !strings.HasPrefix(ih.Name, "etc/ssl/certs/") && !strings.HasPrefix(ih.Name, "usr/share/ca-certificates/") {
				t.Errorf("layer %s holds %s", h.Name, ih.Name)
			}
		}
		layers++
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if layers == 0 {
		t.Errorf("docker save %s: no layer found", ref)
	}
}

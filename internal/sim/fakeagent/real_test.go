//go:build linux

package fakeagent_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// The texts of bin/de-DE/strings.json in the real package (src/Misc/layoutbin/de-DE/strings.json).
const (
	deListening = "Auf Aufträge lauschen"
	deRunning   = "quick wird ausgeführt"
	deCompleted = "Der Auftrag „quick“ wurde mit folgendem Ergebnis abgeschlossen: Succeeded"
)

func TestLocalizedOutput(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "de")
	p := start(t, root, []string{"LANG=de_DE.UTF-8", "LC_ALL=", "LC_MESSAGES="}, "run", "--startuptype", "service")
	p.waitOutput(deListening, 1, 15*time.Second)
	id, err := s.QueueJob(sim.JobSpec{Name: "quick", Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.waitOutput(deCompleted, 1, 15*time.Second)
	waitRequest(t, s, id, finished)
	p.signal(syscall.SIGINT)
	p.wait(20 * time.Second)
	out := p.output()
	if !strings.Contains(out, deRunning) || !strings.Contains(out, "Toolfunktionen werden gesucht.") {
		t.Errorf("German output lacks the running job or the scan line:\n%s", out)
	}
	for _, en := range []string{"Listening for Jobs", "Running job", "completed with result"} {
		if strings.Contains(out, en) {
			t.Errorf("LANG=de_DE.UTF-8 printed the English %q:\n%s", en, out)
		}
	}
	// LC_ALL wins over LANG; a culture without strings.json falls back to en-US.
	p = start(t, root, []string{"LANG=de_DE.UTF-8", "LC_ALL=fr_FR.UTF-8"}, "run", "--startuptype", "service")
	p.waitOutput("Listening for Jobs", 1, 15*time.Second)
	p.signal(syscall.SIGINT)
	p.wait(20 * time.Second)
}

func TestCredentialsReadLikeTheRealListener(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "creds")
	key, _ := os.ReadFile(filepath.Join(root, ".credentials_rsaparams"))
	creds, _ := os.ReadFile(filepath.Join(root, ".credentials"))

	// Missing .credentials: LoadCredentials throws outside the retry loop, Program.cs exits 2.
	os.Remove(filepath.Join(root, ".credentials"))
	code, out := runSync(t, root, nil, "run")
	if code != 2 || !strings.Contains(out, "An error occurred: Credentials not stored.  Must reconfigure.") {
		t.Errorf("no .credentials: exit %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(root, ".credentials"), creds, 0o600)

	// Missing key file.
	os.Remove(filepath.Join(root, ".credentials_rsaparams"))
	if code, out := runSync(t, root, nil, "run"); code != 2 || !strings.Contains(out, "RSA key file") {
		t.Errorf("no .credentials_rsaparams: exit %d\n%s", code, out)
	}

	// The RSA members are case-sensitive (SerializationInfo.GetValue("d")): "D" is refused.
	var m map[string]any
	if err := json.Unmarshal(key[3:], &m); err != nil {
		t.Fatal(err)
	}
	m["D"] = m["d"]
	delete(m, "d")
	b, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(root, ".credentials_rsaparams"), b, 0o600)
	if code, out := runSync(t, root, nil, "run"); code != 2 || !strings.Contains(out, "Member 'd' was not found.") {
		t.Errorf("key with \"D\": exit %d\n%s", code, out)
	}

	// Without a BOM the same files work (Json.NET reads either), and the agent authenticates with
	// a JWT signed by that key.
	os.WriteFile(filepath.Join(root, ".credentials_rsaparams"), key[3:], 0o600)
	p := start(t, root, nil, "run", "--startuptype", "service")
	p.waitOutput("Listening for Jobs", 1, 15*time.Second)
	waitAgent(t, s, "creds", func(a sim.AgentView) bool { return a.Status == "online" })
	p.signal(syscall.SIGINT)
	if code, _ := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit %d\n%s", code, p.output())
	}

	// An empty .agent (killed mid-write) is an unhandled exception: exit 2.
	os.WriteFile(filepath.Join(root, ".agent"), nil, 0o644)
	if code, out := runSync(t, root, nil, "run"); code != 2 || !strings.Contains(out, "An error occurred:") {
		t.Errorf("empty .agent: exit %d\n%s", code, out)
	}
}

// proxy is a loopback forward proxy that counts the requests it forwards.
func proxy(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.Out.URL = r.In.URL; r.Out.Host = r.In.Host }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestEnvAndProxyFiles(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "proxied")

	// A planted .proxy routes the listener's traffic through it.
	px, n := proxy(t)
	os.WriteFile(filepath.Join(root, ".proxy"), []byte(px.URL+"\n"), 0o644)
	p := start(t, root, nil, "run", "--startuptype", "service")
	p.waitOutput("Listening for Jobs", 1, 15*time.Second)
	p.signal(syscall.SIGINT)
	p.wait(20 * time.Second)
	if n.Load() == 0 {
		t.Error("the listener ignored .proxy")
	}
	os.Remove(filepath.Join(root, ".proxy"))

	// .env is loaded at start and overrides the environment: its http_proxy is used, and its
	// VSTS_AGENT_INPUT_ONCE=true makes this run a run-once agent.
	px2, n2 := proxy(t)
	os.WriteFile(filepath.Join(root, ".env"), []byte("http_proxy="+px2.URL+"\nVSTS_AGENT_INPUT_ONCE=true\nnot a variable\n=x\n"), 0o644)
	p = start(t, root, []string{"http_proxy="}, "run", "--startuptype", "service")
	p.waitOutput("Listening for Jobs", 1, 15*time.Second)
	if _, err := s.QueueJob(sim.JobSpec{Name: "one", Duration: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if code, _ := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit %d\n%s", code, p.output())
	}
	if n2.Load() == 0 {
		t.Error("the listener ignored http_proxy from .env")
	}

	// Without either file the proxies see nothing.
	os.Remove(filepath.Join(root, ".env"))
	before, before2 := n.Load(), n2.Load()
	p = start(t, root, []string{"http_proxy="}, "run", "--startuptype", "service")
	p.waitOutput("Listening for Jobs", 1, 15*time.Second)
	p.signal(syscall.SIGINT)
	p.wait(20 * time.Second)
	if n.Load() != before || n2.Load() != before2 {
		t.Error("traffic went through a proxy after its file was removed")
	}
}

func TestRunningJobWithoutCompletion(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "renew")
	p := start(t, root, nil, "run", "--startuptype", "service")
	p.waitOutput("Listening for Jobs", 1, 15*time.Second)
	if _, err := s.QueueJob(sim.JobSpec{Name: "lost", Duration: time.Minute, FailFirstRenew: true}); err != nil {
		t.Fatal(err)
	}
	p.waitOutput("Running job: lost", 1, 15*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.diag(), "Unable to renew job request") {
		if time.Now().After(deadline) {
			t.Fatalf("no failed renewal:\n%s", p.diag())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// No worker was started, and the listener holds no job: a stop is immediate and prints no
	// completion (the server still holds the request until its lock expires).
	if c := children(p.cmd.Process.Pid); len(c) != 0 {
		t.Errorf("a worker was started: %v", c)
	}
	p.signal(syscall.SIGINT)
	if code, _ := p.wait(20 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
	if strings.Contains(p.output(), "completed with result") {
		t.Errorf("a job whose first renewal failed was reported completed:\n%s", p.output())
	}
}

func TestRealCancelTimings(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "cancel")
	p := start(t, root, nil, "run", "--startuptype", "service")
	p.waitOutput("Listening for Jobs", 1, 15*time.Second)
	id, err := s.QueueJob(sim.JobSpec{Name: "stubborn", Duration: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	p.waitOutput("Running job: stubborn", 1, 15*time.Second)
	waitAgent(t, s, "cancel", func(a sim.AgentView) bool { return a.AssignedRequestID == id })
	signalled := time.Now()
	p.signal(syscall.SIGINT)
	if code, _ := p.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.output())
	}
	// A step that ignores SIGINT and SIGTERM is killed after 7.5 s + 2.5 s; only then is the
	// request completed and the session deleted.
	if el := time.Since(signalled); el < 10*time.Second {
		t.Errorf("cancel took %v, less than the real 7.5 s + 2.5 s", el)
	}
	if r := waitRequest(t, s, id, finished); r.Result != "canceled" {
		t.Errorf("request %+v", r)
	}

	// The explicit test knob shortens it.
	p = start(t, root, nil, "run", "--startuptype", "service")
	p.waitOutput("Listening for Jobs", 1, 15*time.Second)
	id, _ = s.QueueJob(sim.JobSpec{Name: "quick-cancel", Duration: 5 * time.Minute, SigintTimeoutMs: -1, SigtermTimeoutMs: -1})
	p.waitOutput("Running job: quick-cancel", 1, 15*time.Second)
	p.signal(syscall.SIGINT)
	if code, _ := p.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.output())
	}
	waitRequest(t, s, id, finished)
}

func TestSelfUpdateLogInDiagPath(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	root := extract(t)
	configure(t, s, root, "diag")
	diag := t.TempDir()
	p := start(t, root, []string{"AGENT_DIAGLOGPATH=" + diag}, "run", "--startuptype", "service")
	p.waitOutput("Listening for Jobs", 1, 15*time.Second)
	if err := s.RequestUpdate("diag", "4.261.0"); err != nil {
		t.Fatal(err)
	}
	if code, _ := p.wait(15 * time.Second); code != 3 {
		t.Fatalf("exit %d\n%s", code, p.output())
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(diag, "SelfUpdate-*.log.succeed")); len(m) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SelfUpdate-*.log.succeed in AGENT_DIAGLOGPATH %s", diag)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m, _ := filepath.Glob(filepath.Join(root, "_diag", "SelfUpdate-*")); len(m) != 0 {
		t.Errorf("self-update log written to _diag despite AGENT_DIAGLOGPATH: %v", m)
	}
}

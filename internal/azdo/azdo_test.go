package azdo_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

const (
	managePAT = "manage-pat-0123456789abcdef"
	readPAT   = "read-pat-0123456789abcdef"
)

func startSim(t *testing.T, o sim.Options) *sim.Server {
	t.Helper()
	if o.Tokens == nil {
		o.Tokens = map[string]string{managePAT: sim.ScopeManage, readPAT: sim.ScopeRead}
	}
	return sim.StartForTest(t, o)
}

func pat(p string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return secrets.BasicAuth(p), nil }
}

func client(t *testing.T, s *sim.Server, auth func(context.Context) (string, error), mod ...func(*azdo.Options)) *azdo.Client {
	t.Helper()
	o := azdo.Options{URL: s.OrgURL(), Auth: auth, HTTPClient: s.HTTPClient(), UnreachableFor: 2 * time.Second,
		RetryWaitMin: 20 * time.Millisecond, RetryWaitMax: 200 * time.Millisecond, MaxRetries: 3}
	for _, m := range mod {
		m(&o)
	}
	c, err := azdo.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantErr(t *testing.T, err error, code int, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want exit %d", code)
	}
	if got := exit.Code(err); got != code {
		t.Fatalf("exit code %d, want %d: %v", got, code, err)
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error does not mention %q: %v", w, err)
		}
	}
}

func TestOperations(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, sim.Options{Pools: []string{"Default", "Linux"}})
	c := client(t, s, pat(managePAT))

	if user, err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("connected as %q", user)
	}
	p, err := c.Pool(ctx, "linux")
	if err != nil || p.Name != "Linux" || p.ID == 0 {
		t.Fatalf("pool %+v %v", p, err)
	}
	_, err = c.Pool(ctx, "Nope")
	wantErr(t, err, exit.Usage, `"Nope"`, s.OrgURL(), "AZP_POOL")

	old := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Second)
	if err := s.SeedAgents("Linux", 3, "offline", old, "ci-"); err != nil {
		t.Fatal(err)
	}
	agents, err := c.Agents(ctx, p.ID)
	if err != nil || len(agents) != 3 {
		t.Fatalf("agents %+v %v", agents, err)
	}
	for _, a := range agents {
		if a.Online() || !a.StatusChangedOn.Equal(old) || !strings.HasPrefix(a.Name, "ci-") {
			t.Fatalf("agent %+v", a)
		}
	}
	a, err := c.Agent(ctx, p.ID, "CI-1")
	if err != nil || a == nil || a.Name != "ci-1" {
		t.Fatalf("agent %+v %v", a, err)
	}
	if none, err := c.Agent(ctx, p.ID, "absent"); none != nil || err != nil {
		t.Fatalf("absent agent: %+v %v", none, err)
	}
	if err := c.SetEnabled(ctx, p.ID, a.ID, false); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Agent("Linux", "ci-1"); v.Enabled {
		t.Fatal("agent still enabled")
	}
	err = c.SetEnabled(ctx, p.ID, 99999, false)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("SetEnabled on absent agent: %v", err)
	}
	reqs, err := c.JobRequests(ctx, p.ID, a.ID)
	if err != nil || len(reqs) != 0 {
		t.Fatalf("job requests %+v %v", reqs, err)
	}
	if err := c.DeleteAgent(ctx, p.ID, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Agent("Linux", "ci-1"); ok {
		t.Fatal("agent not deleted")
	}
	if err := c.DeleteAgent(ctx, p.ID, a.ID); err != nil {
		t.Fatalf("deleting an absent agent: %v", err)
	}
	if err := c.CanManage(ctx, p.ID); err != nil {
		t.Fatal(err)
	}

	// Packages.
	dir := t.TempDir()
	for _, v := range []string{"4.260.0", "4.261.0"} {
		f := filepath.Join(dir, "vsts-agent-linux-x64-"+v+".tar.gz")
		os.WriteFile(f, []byte("package "+v), 0o644)
		if err := s.AddPackage(sim.PackageSpec{Version: v, Platform: "linux-x64", FilePath: f}); err != nil {
			t.Fatal(err)
		}
	}
	pkgs, err := c.Packages(ctx, "linux-x64", 1)
	if err != nil || len(pkgs) != 1 || pkgs[0].Version != "4.261.0" || len(pkgs[0].SHA256) != 64 || !strings.Contains(pkgs[0].URL, pkgs[0].Filename) {
		t.Fatalf("packages %+v %v", pkgs, err)
	}
	if pkgs, err := c.Packages(ctx, "linux-musl-arm64", 5); err != nil || len(pkgs) != 0 {
		t.Fatalf("no packages expected: %+v %v", pkgs, err)
	}
}

func TestJobRequestsAndAssigned(t *testing.T) {
	// Covered end to end with the fake agent by the supervisor tests; here only the listing shape.
	ctx := context.Background()
	s := startSim(t, sim.Options{})
	c := client(t, s, pat(managePAT))
	p, err := c.Pool(ctx, "Default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.QueueJob(sim.JobSpec{Pool: "Default", Name: "build"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.JobRequests(ctx, p.ID, 1); err != nil {
		t.Fatal(err)
	}
}

func TestAuthErrors(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, sim.Options{})

	_, err := client(t, s, pat("wrong-token-123456")).Pool(ctx, "Default")
	wantErr(t, err, exit.Denied, "401", "invalid or expired", s.OrgURL())

	rc := client(t, s, pat(readPAT))
	p, err := rc.Pool(ctx, "Default")
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, rc.CanManage(ctx, p.ID), exit.Denied, "may read", "not manage", "Agent Pools (read & manage)")
	wantErr(t, rc.SetEnabled(ctx, p.ID, 1, false), exit.Denied, "403", "Agent Pools (read & manage)")

	// A credential that cannot be obtained keeps its kind.
	bad := func(context.Context) (string, error) {
		return "", exit.Config(os.ErrNotExist)
	}
	_, err = client(t, s, bad).Pool(ctx, "Default")
	wantErr(t, err, exit.Usage)
}

func TestMalformedURL(t *testing.T) {
	for _, u := range []string{"", "dev.azure.com/acme", "ftp://x/y", "https://", "https://dev.azure.com/acme?x=1"} {
		_, err := azdo.New(context.Background(), azdo.Options{URL: u})
		wantErr(t, err, exit.Usage, "AZP_URL")
	}
}

func TestRetries(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, sim.Options{})
	c := client(t, s, pat(managePAT))
	if _, err := c.Pool(ctx, "Default"); err != nil { // warm the location cache
		t.Fatal(err)
	}

	t.Run("503 twice then success", func(t *testing.T) {
		s.ResetRequestLog()
		s.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/distributedtask/pools$", Status: 503, Count: 2})
		if _, err := c.Pool(ctx, "Default"); err != nil {
			t.Fatal(err)
		}
		log := s.RequestLog()
		if len(log) != 3 || log[0].Status != 503 || log[1].Status != 503 || log[2].Status != 200 {
			t.Fatalf("log %+v", log)
		}
	})
	t.Run("5xx for good", func(t *testing.T) {
		s.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/distributedtask/pools$", Status: 500, Count: 10})
		defer s.ClearFaults()
		_, err := c.Pool(ctx, "Default")
		wantErr(t, err, exit.Failure, "500", "3 retries")
	})
	t.Run("429 with Retry-After is waited", func(t *testing.T) {
		s.ResetRequestLog()
		s.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/distributedtask/pools$", Status: 429, RetryAfter: time.Second, Count: 1})
		if _, err := c.Pool(ctx, "Default"); err != nil {
			t.Fatal(err)
		}
		log := s.RequestLog()
		if len(log) != 2 || log[0].Status != 429 || log[1].Status != 200 {
			t.Fatalf("log %+v", log)
		}
		// RetryWaitMax is 200ms: only Retry-After explains a gap of a second.
		if gap := log[1].Time.Sub(log[0].Time); gap < 950*time.Millisecond {
			t.Fatalf("retried after %s, Retry-After said 1s", gap)
		}
	})
	t.Run("dropped connection", func(t *testing.T) {
		s.ResetRequestLog()
		s.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/distributedtask/pools$", Drop: true, Count: 1})
		if _, err := c.Pool(ctx, "Default"); err != nil {
			t.Fatal(err)
		}
		if log := s.RequestLog(); len(log) != 2 || log[1].Status != 200 {
			t.Fatalf("log %+v", log)
		}
	})
	t.Run("caller's context bounds the retries", func(t *testing.T) {
		s.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/distributedtask/pools$", Status: 429, RetryAfter: 10 * time.Second, Count: 1})
		defer s.ClearFaults()
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Pool(cctx, "Default")
		if err == nil || time.Since(start) > 3*time.Second {
			t.Fatalf("err %v after %s", err, time.Since(start))
		}
	})
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	c, err := azdo.New(context.Background(), azdo.Options{URL: "http://" + addr + "/org", Auth: pat("x"),
		UnreachableFor: 700 * time.Millisecond, RetryWaitMin: 50 * time.Millisecond, RetryWaitMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Pool(context.Background(), "Default")
	took := time.Since(start)
	wantErr(t, err, exit.Failure, "cannot reach", addr)
	if took < 700*time.Millisecond || took > 5*time.Second {
		t.Fatalf("gave up after %s, want about 700ms", took)
	}
}

func TestTLS(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, sim.Options{TLS: true})
	// The system roots do not hold the simulator's CA.
	plain, _ := azdo.HTTPClient(&config.Settings{})
	_, err := client(t, s, pat(managePAT), func(o *azdo.Options) { o.HTTPClient = plain }).Pool(ctx, "Default")
	wantErr(t, err, exit.Failure, "TLS", "AZP_CA_CERT_FILE")

	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, s.CACertPEM(), 0o644)
	hc, err := azdo.HTTPClient(&config.Settings{CACertFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, s, pat(managePAT), func(o *azdo.Options) { o.HTTPClient = hc }).Pool(ctx, "Default"); err != nil {
		t.Fatal(err)
	}

	os.WriteFile(ca, []byte("not a certificate"), 0o644)
	_, err = azdo.HTTPClient(&config.Settings{CACertFile: ca})
	wantErr(t, err, exit.Usage, "AZP_CA_CERT_FILE")
}

func TestProxySettings(t *testing.T) {
	hc, err := azdo.HTTPClient(&config.Settings{HTTPSProxy: "http://proxy.corp:3128", NoProxy: "internal.corp"})
	if err != nil {
		t.Fatal(err)
	}
	tr := hc.Transport.(*http.Transport)
	for target, want := range map[string]string{
		"https://dev.azure.com/acme":   "http://proxy.corp:3128",
		"https://tfs.internal.corp/dc": "",
		"https://127.0.0.1:8443/sim":   "", // loopback is never proxied
	} {
		req, _ := http.NewRequest("GET", target, nil)
		u, err := tr.Proxy(req)
		got := ""
		if u != nil {
			got = u.String()
		}
		if err != nil || got != want {
			t.Errorf("%s: proxy %q (%v), want %q", target, got, err, want)
		}
	}
}

// The client asks for the Authorization header at every request: a rotated token file is used
// at the next call.
func TestRotatedTokenFile(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, sim.Options{})
	path := filepath.Join(t.TempDir(), "token")
	os.WriteFile(path, []byte(managePAT+"\n"), 0o600)
	settings, err := config.Resolve(ctx, config.Options{Env: func(k string) (string, bool) {
		v, ok := map[string]string{"AZP_URL": s.OrgURL(), "AZP_TOKEN_FILE": path}[k]
		return v, ok
	}})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := secrets.NewProvider(ctx, settings, secrets.ProviderOptions{})
	c := client(t, s, p.Authorization)
	if _, err := c.Pool(ctx, "Default"); err != nil {
		t.Fatal(err)
	}
	// Rotate: the old token stops working on the server, the file gets the new one.
	s.AddToken("rotated-pat-abcdef123456", sim.ScopeManage)
	s.RemoveToken(managePAT)
	os.WriteFile(path, []byte("rotated-pat-abcdef123456\n"), 0o600)
	if _, err := c.Pool(ctx, "Default"); err != nil {
		t.Fatalf("rotated token not used: %v", err)
	}
}

func TestNotAzureDevOps(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>welcome</html>")
	}))
	defer srv.Close()
	c, _ := azdo.New(context.Background(), azdo.Options{URL: srv.URL + "/org", Auth: pat("x")})
	_, err := c.Pool(context.Background(), "Default")
	wantErr(t, err, exit.Usage, "AZP_URL", "did not answer like Azure DevOps")
}

func TestDeleteAgentInUse(t *testing.T) {
	ctx := context.Background()
	s := startSim(t, sim.Options{})
	c := client(t, s, pat(managePAT))
	s.SeedAgents("Default", 1, "offline", time.Now(), "busy-")
	a, err := c.Agent(ctx, 1, "busy-0")
	if err != nil || a == nil {
		t.Fatal(a, err)
	}
	s.Fault(sim.FaultSpec{Method: "DELETE", PathRegexp: "/agents/", Status: 400, Body: sim.AgentInUseBody("busy-0"), Count: 1})
	err = c.DeleteAgent(ctx, 1, a.ID)
	if !errors.Is(err, azdo.ErrAgentInUse) || exit.Code(err) != exit.Failure || !strings.Contains(err.Error(), "busy-0") {
		t.Fatalf("%v", err)
	}
	if err := c.DeleteAgent(ctx, 1, a.ID); err != nil {
		t.Fatal(err)
	}
}

// A Retry-After holds the whole client: a request that was not itself refused still waits, so a
// prune's workers never keep hitting a rate-limited identity.
func TestRetryAfterPausesTheWholeClient(t *testing.T) {
	s := startSim(t, sim.Options{})
	c := client(t, s, pat(managePAT))
	ctx := context.Background()
	pool, err := c.Pool(ctx, "Default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/agents$", Status: 429, RetryAfter: time.Second, Count: 1}); err != nil {
		t.Fatal(err)
	}
	s.ResetRequestLog()
	done := make(chan error, 1)
	go func() { _, err := c.Agents(ctx, pool.ID); done <- err }()
	var limited time.Time
	for limited.IsZero() {
		for _, r := range s.RequestLog() {
			if r.Status == 429 {
				limited = r.Time
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the client has the 429 by now
	if _, err := c.Pool(ctx, "Default"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, r := range s.RequestLog() {
		if r.Time.After(limited) && r.Status != 429 && r.Time.Sub(limited) < time.Second {
			t.Errorf("%s %s sent %s after a 429 with Retry-After: 1", r.Method, r.Path, r.Time.Sub(limited))
		}
	}
}

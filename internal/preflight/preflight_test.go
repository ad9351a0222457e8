package preflight_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
	"github.com/azp-entrypoint/azp-entrypoint/internal/preflight"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets/entratest"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets/smtest"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

const (
	managePAT = "check-manage-pat-0123456789"
	readPAT   = "check-read-pat-0123456789"
)

type world struct {
	sim   *sim.Server
	sm    *smtest.Server
	entra *entratest.Server
	dir   string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{dir: t.TempDir()}
	w.sim = sim.New(sim.Options{Tokens: map[string]string{managePAT: sim.ScopeManage, readPAT: sim.ScopeRead}})
	if _, err := w.sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.sim.Close() })
	pkg := filepath.Join(w.dir, "vsts-agent-linux-x64-4.261.0.tar.gz")
	os.WriteFile(pkg, []byte("agent"), 0o644)
	if err := w.sim.AddPackage(sim.PackageSpec{Version: "4.261.0", Platform: "linux-x64", FilePath: pkg}); err != nil {
		t.Fatal(err)
	}

	w.sm = smtest.New()
	t.Cleanup(w.sm.Close)
	for _, k := range []string{"AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(w.dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(w.dir, "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for k, v := range w.sm.Env() {
		t.Setenv(k, v)
	}
	w.sm.PutSecret("azp/pat", managePAT)
	w.sm.PutSecret("azp/json", `{"AZP_TOKEN":"`+managePAT+`","AZP_POOL":"Default","Favourite":"x"}`)
	w.sm.Deny("azp/denied", true)

	w.entra = entratest.New()
	t.Cleanup(w.entra.Close)
	w.entra.AddApp("tenant-1", "client-1", "sp-secret-1")
	w.entra.OnIssue(func(i entratest.Issued) { w.sim.AddToken(i.Token, sim.ScopeManage) })
	return w
}

type outcome struct {
	results []preflight.Result
	err     error
	out     string
}

func (w *world) check(t *testing.T, env map[string]string, mod func(*preflight.Deps)) outcome {
	t.Helper()
	ctx := context.Background()
	get := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	s, err := config.Resolve(ctx, config.Options{Env: get, Secret: secrets.FetchSecretWith(secrets.SecretsManagerOptions{MaxBackoff: 50 * time.Millisecond})})
	var out bytes.Buffer
	m := logging.NewMasker()
	if s != nil {
		m.Add(s.Secrets...)
	}
	d := preflight.Deps{Settings: s, SettingsErr: err, Out: &out, Masker: m, HTTPClient: w.entra.Client(),
		WorkDir: func(context.Context) error { return nil },
		ClientOptions: func(o *azdo.Options) {
			o.RetryWaitMin, o.RetryWaitMax, o.MaxRetries, o.UnreachableFor = 20*time.Millisecond, 200*time.Millisecond, 3, time.Second
		}}
	if mod != nil {
		mod(&d)
	}
	res := preflight.Run(ctx, d)
	return outcome{res, preflight.FirstError(res), out.String()}
}

func TestCheckPasses(t *testing.T) {
	w := newWorld(t)
	w.sim.ResetRequestLog()
	o := w.check(t, map[string]string{"AZP_URL": w.sim.OrgURL(), "AZP_TOKEN": managePAT, "AZP_AGENT_PLATFORM": "linux-x64"}, nil)
	if o.err != nil {
		t.Fatalf("%v\n%s", o.err, o.out)
	}
	t.Logf("\n%s", o.out)
	if len(o.results) != 8 || strings.Count(o.out, "\n") != 8 || strings.Contains(o.out, managePAT) {
		t.Fatalf("output:\n%s", o.out)
	}
	// check registers nothing.
	if n := len(w.sim.Agents("")); n != 0 {
		t.Fatalf("%d agents registered", n)
	}
	for _, r := range w.sim.RequestLog() {
		if r.Method != "GET" && r.Method != "OPTIONS" {
			t.Fatalf("check sent %s %s", r.Method, r.Path)
		}
	}
}

func TestCheckServicePrincipal(t *testing.T) {
	w := newWorld(t)
	o := w.check(t, map[string]string{"AZP_URL": w.sim.OrgURL(), "AZP_CLIENTID": "client-1", "AZP_CLIENTSECRET": "sp-secret-1",
		"AZP_TENANTID": "tenant-1", "AZURE_AUTHORITY_HOST": w.entra.AuthorityHost(), "AZP_AGENT_PLATFORM": "linux-x64"}, nil)
	if o.err != nil || len(w.entra.Issued()) != 1 {
		t.Fatalf("%v\n%s", o.err, o.out)
	}
	if strings.Contains(o.out, "sp-secret-1") || strings.Contains(o.out, w.entra.Issued()[0].Token) {
		t.Fatalf("secret in output:\n%s", o.out)
	}
}

// The bad-input table: every case asserts the exit code and that the message names the setting or
// resource.
func TestCheckBadInput(t *testing.T) {
	w := newWorld(t)
	url := w.sim.OrgURL()
	tokenFile := filepath.Join(w.dir, "empty-token")
	os.WriteFile(tokenFile, []byte("\n"), 0o600)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := l.Addr().String()
	l.Close()

	base := func(extra map[string]string) map[string]string {
		m := map[string]string{"AZP_URL": url, "AZP_TOKEN": managePAT, "AZP_AGENT_PLATFORM": "linux-x64"}
		for k, v := range extra {
			if v == "-" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	cases := []struct {
		name   string
		env    map[string]string
		setup  func() func()
		mod    func(*preflight.Deps)
		code   int
		failed string // check that fails first
		words  []string
	}{
		{name: "missing AZP_URL", env: base(map[string]string{"AZP_URL": "-"}), code: 2, failed: "settings", words: []string{"AZP_URL", "required"}},
		{name: "malformed AZP_URL", env: base(map[string]string{"AZP_URL": "dev.azure.com/acme"}), code: 2, failed: "settings", words: []string{"AZP_URL", "dev.azure.com/acme"}},
		{name: "empty token", env: base(map[string]string{"AZP_TOKEN": ""}), code: 2, failed: "settings", words: []string{"AZP_TOKEN"}},
		{name: "whitespace token", env: base(map[string]string{"AZP_TOKEN": "   "}), code: 2, failed: "settings", words: []string{"AZP_TOKEN", "none found"}},
		{name: "empty token file", env: base(map[string]string{"AZP_TOKEN": "-", "AZP_TOKEN_FILE": tokenFile}), code: 2, failed: "credentials", words: []string{"AZP_TOKEN_FILE", tokenFile, "empty"}},
		{name: "PAT and service principal", env: base(map[string]string{"AZP_CLIENTID": "client-1", "AZP_CLIENTSECRET": "s", "AZP_TENANTID": "tenant-1"}), code: 2, failed: "settings", words: []string{"AZP_TOKEN", "AZP_CLIENTID"}},
		{name: "partial service principal", env: base(map[string]string{"AZP_TOKEN": "-", "AZP_CLIENTID": "client-1", "AZP_CLIENTSECRET": "s"}), code: 2, failed: "settings", words: []string{"AZP_TENANTID", "incomplete"}},
		{name: "secret not found", env: base(map[string]string{"AZP_TOKEN": "-", "AZP_SECRET_ID": "azp/nope"}), code: 2, failed: "settings", words: []string{"AZP_SECRET_ID", "azp/nope", "not found"}},
		{name: "secret access denied", env: base(map[string]string{"AZP_TOKEN": "-", "AZP_SECRET_ID": "azp/denied"}), code: 3, failed: "settings", words: []string{"AZP_SECRET_ID", "azp/denied", "GetSecretValue"}},
		{name: "secret throttled then served", env: base(map[string]string{"AZP_TOKEN": "-", "AZP_SECRET_ID": "azp/pat"}), setup: func() func() { w.sm.Throttle(2); return func() { w.sm.Throttle(0) } }, code: 0},
		{name: "Entra rejects the client secret", env: base(map[string]string{"AZP_TOKEN": "-", "AZP_CLIENTID": "client-1", "AZP_CLIENTSECRET": "wrong-secret", "AZP_TENANTID": "tenant-1", "AZURE_AUTHORITY_HOST": w.entra.AuthorityHost()}), code: 3, failed: "credentials", words: []string{"AZP_CLIENTSECRET", "AADSTS7000215"}},
		{name: "401", env: base(map[string]string{"AZP_TOKEN": "expired-token-123456"}), code: 3, failed: "server", words: []string{"401", "invalid or expired", url}},
		// A read-only identity is reported as "unknown", never a failure: registration decides.
		{name: "read-only token", env: base(map[string]string{"AZP_TOKEN": readPAT}), code: 0},
		{name: "unknown pool", env: base(map[string]string{"AZP_POOL": "Nope"}), code: 2, failed: "pool", words: []string{"AZP_POOL", `"Nope"`, url}},
		{name: "pinned version missing", env: base(map[string]string{"AZP_AGENT_VERSION": "4.100.0"}), code: 2, failed: "package", words: []string{"AZP_AGENT_VERSION", "4.100.0", "linux-x64"}},
		{name: "unreachable server", env: base(map[string]string{"AZP_URL": "http://" + deadAddr + "/org"}), code: 1, failed: "server", words: []string{"cannot reach", deadAddr}},
		{name: "503 twice then success", env: base(nil), setup: func() func() {
			w.sim.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/distributedtask/pools$", Status: 503, Count: 2})
			return w.sim.ClearFaults
		}, code: 0},
		{name: "work directory", env: base(nil), mod: func(d *preflight.Deps) {
			d.WorkDir = func(context.Context) error {
				return exit.Runtime(errors.New("/azp/agent/_work: read-only file system"))
			}
		}, code: 1, failed: "workdir", words: []string{"/azp/agent/_work"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				defer c.setup()()
			}
			o := w.check(t, c.env, c.mod)
			if got := exit.Code(o.err); got != c.code {
				t.Fatalf("exit %d, want %d: %v\n%s", got, c.code, o.err, o.out)
			}
			if c.code == 0 {
				return
			}
			if !strings.HasPrefix(o.err.Error(), "check "+c.failed+":") {
				t.Fatalf("first failure %v, want check %s\n%s", o.err, c.failed, o.out)
			}
			for _, word := range c.words {
				if !strings.Contains(o.err.Error(), word) {
					t.Fatalf("message does not name %q: %v", word, o.err)
				}
			}
			if !strings.Contains(o.out, "FAIL  "+c.failed) {
				t.Fatalf("output has no FAIL line for %s:\n%s", c.failed, o.out)
			}
		})
	}

	t.Run("secret with unknown keys warns", func(t *testing.T) {
		o := w.check(t, base(map[string]string{"AZP_TOKEN": "-", "AZP_SECRET_ID": "azp/json"}), nil)
		if o.err != nil || !strings.Contains(o.results[0].Detail, `"Favourite"`) {
			t.Fatalf("%v\n%s", o.err, o.out)
		}
	})
	t.Run("429 with Retry-After is waited", func(t *testing.T) {
		w.sim.ResetRequestLog()
		w.sim.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/distributedtask/pools$", Status: 429, RetryAfter: time.Second, Count: 1})
		defer w.sim.ClearFaults()
		o := w.check(t, base(nil), nil)
		if o.err != nil {
			t.Fatal(o.err)
		}
		var limited, next time.Time
		for _, r := range w.sim.RequestLog() {
			if strings.HasSuffix(r.Path, "/distributedtask/pools") {
				if r.Status == 429 {
					limited = r.Time
				} else if !limited.IsZero() && next.IsZero() {
					next = r.Time
				}
			}
		}
		if limited.IsZero() || next.Sub(limited) < 950*time.Millisecond {
			t.Fatalf("429 at %v, retried at %v: Retry-After not honoured", limited, next)
		}
	})
}

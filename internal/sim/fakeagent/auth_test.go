//go:build linux

package fakeagent_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/fakeagent"
)

// --auth SP: client credentials at $AZURE_AUTHORITY_HOST/<tenant>/oauth2/v2.0/token, then Bearer.
func TestServicePrincipal(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	const bearer = "entra-access-token-for-the-sp"
	if err := s.AddToken(bearer, sim.ScopeManage); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	entra := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.URL.Path != "/my-tenant/oauth2/v2.0/token" || r.Form.Get("grant_type") != "client_credentials" ||
			r.Form.Get("client_id") != "my-client" || r.Form.Get("client_secret") != "my-secret" ||
			r.Form.Get("scope") != "499b84ac-1321-427f-aa17-267ca6975798/.default" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		calls.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"access_token": bearer, "token_type": "Bearer", "expires_in": 3600})
	}))
	defer entra.Close()
	root := extract(t)
	env := []string{"AZURE_AUTHORITY_HOST=" + entra.URL + "/", "VSTS_AGENT_INPUT_CLIENTSECRET=my-secret"}
	code, out := runSync(t, root, env, "configure", "--unattended", "--url", s.OrgURL(), "--pool", "Default", "--agent", "sp",
		"--auth", "SP", "--clientid", "my-client", "--tenantid", "my-tenant")
	if code != 0 || calls.Load() != 1 {
		t.Fatalf("configure: exit %d, %d token calls\n%s", code, calls.Load(), out)
	}
	if strings.Contains(out, "my-secret") {
		t.Error("secret printed")
	}
	code, out = runSync(t, root, []string{"AZURE_AUTHORITY_HOST=" + entra.URL, "VSTS_AGENT_INPUT_CLIENTSECRET=wrong"}, "remove", "--unattended",
		"--auth", "sp", "--clientid", "my-client", "--tenantid", "my-tenant")
	if code != 1 {
		t.Errorf("remove with a bad secret: exit %d\n%s", code, out)
	}
	code, out = runSync(t, root, env, "remove", "--unattended", "--auth", "sp", "--clientid", "my-client", "--tenantid", "my-tenant")
	if code != 0 {
		t.Errorf("remove: exit %d\n%s", code, out)
	}
	if _, ok := s.Agent("Default", "sp"); ok {
		t.Error("agent not removed")
	}
}

// TLS with --sslcacert relative to the agent root (not the working directory).
func TestTLS(t *testing.T) {
	t.Parallel()
	s := sim.New(sim.Options{TLS: true, PollTimeout: 300 * time.Millisecond, Tokens: map[string]string{pat: sim.ScopeManage}})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	root := extract(t)
	if err := os.WriteFile(filepath.Join(root, "ca.pem"), s.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runSync(t, root, []string{"VSTS_AGENT_INPUT_TOKEN=" + pat}, "configure", "--unattended", "--url", s.OrgURL(), "--pool", "Default", "--agent", "tls")
	if code != 1 {
		t.Errorf("configure without the CA: exit %d\n%s", code, out)
	}
	configure(t, s, root, "tls", "--sslcacert", "ca.pem")
	p := start(t, root, nil, "run")
	p.waitOutput(fakeagent.MsgListening, 1, 15*time.Second)
	p.signal(syscall.SIGINT)
	if code, sig := p.wait(10 * time.Second); code != 0 || sig != 0 {
		t.Errorf("exit %d signal %v\n%s", code, sig, p.output())
	}
}

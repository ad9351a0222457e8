// Package entratest is a loopback fake of the Entra ID (Azure AD) v2.0 token endpoint for tests:
// tenant discovery (GET /{tenant}/v2.0/.well-known/openid-configuration) and the OAuth2
// client-credentials grant (POST /{tenant}/oauth2/v2.0/token, form-encoded). It serves TLS, because
// azidentity refuses a non-https authority host; Client() trusts its certificate. A wrong client
// secret gets the real service's 401 invalid_client answer with AADSTS7000215. Test-only.
package entratest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Scope is the Azure DevOps scope the fake requires.
const Scope = "499b84ac-1321-427f-aa17-267ca6975798/.default"

// Issued is a token the fake handed out.
type Issued struct {
	Tenant, ClientID, Token string
	Expires                 time.Time
}

type app struct{ tenant, secret string }

// Server is the fake.
type Server struct {
	srv *httptest.Server

	mu       sync.Mutex
	apps     map[string]app // client id -> tenant + secret
	lifetime time.Duration
	issued   []Issued
	onIssue  func(Issued)
	requests int
}

// New starts the fake (TLS on a loopback port).
func New() *Server {
	s := &Server{apps: map[string]app{}, lifetime: time.Hour}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", s.token)
	s.srv = httptest.NewTLSServer(mux)
	return s
}

// Close stops the fake.
func (s *Server) Close() { s.srv.Close() }

// AuthorityHost is the value for AZURE_AUTHORITY_HOST.
func (s *Server) AuthorityHost() string { return s.srv.URL + "/" }

// Client is an HTTP client that trusts the fake's certificate.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Transport is the fake's trusting transport, for composing with other test clients.
func (s *Server) Transport() http.RoundTripper { return s.srv.Client().Transport }

// AddApp registers a service principal.
func (s *Server) AddApp(tenant, clientID, secret string) {
	s.mu.Lock()
	s.apps[clientID] = app{tenant: tenant, secret: secret}
	s.mu.Unlock()
}

// SetLifetime sets the lifetime of issued tokens (expires_in).
func (s *Server) SetLifetime(d time.Duration) {
	s.mu.Lock()
	s.lifetime = d
	s.mu.Unlock()
}

// OnIssue calls f for every issued token, e.g. to register it as a bearer token in the simulator.
func (s *Server) OnIssue(f func(Issued)) {
	s.mu.Lock()
	s.onIssue = f
	s.mu.Unlock()
}

// Issued lists the tokens handed out.
func (s *Server) Issued() []Issued {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Issued(nil), s.issued...)
}

// TokenRequests counts token endpoint requests (successful or not).
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	t := r.PathValue("tenant")
	base := s.srv.URL + "/" + t
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"issuer":                                base + "/v2.0",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"tenant_region_scope":                   "EU",
	})
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// aadError writes the service's error shape.
func aadError(w http.ResponseWriter, status, aadsts int, desc string) {
	trace, corr := randHex(16), randHex(16)
	ts := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"error":             map[int]string{401: "invalid_client", 400: "invalid_request"}[status],
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", aadsts, desc, trace, corr, ts),
		"error_codes":       []int{aadsts},
		"timestamp":         ts,
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	tenant := r.PathValue("tenant")
	if err := r.ParseForm(); err != nil {
		aadError(w, 400, 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		aadError(w, 400, 70003, "The app requested an unsupported grant type.")
		return
	}
	clientID, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		clientID, secret = u, p
	}
	s.mu.Lock()
	a, known := s.apps[clientID]
	lifetime, onIssue := s.lifetime, s.onIssue
	s.mu.Unlock()
	tenantKnown := false
	s.mu.Lock()
	for _, x := range s.apps {
		if x.tenant == tenant {
			tenantKnown = true
		}
	}
	s.mu.Unlock()
	switch {
	case !tenantKnown:
		aadError(w, 400, 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	case !known || a.tenant != tenant:
		aadError(w, 400, 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, tenant))
		return
	case secret != a.secret:
		aadError(w, 401, 7000215, fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
		return
	}
	if sc := r.PostForm.Get("scope"); !strings.Contains(" "+sc+" ", " "+Scope+" ") {
		aadError(w, 400, 1002012, fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", sc))
		return
	}
	is := Issued{Tenant: tenant, ClientID: clientID, Token: "entra." + randHex(24), Expires: time.Now().Add(lifetime)}
	s.mu.Lock()
	s.issued = append(s.issued, is)
	s.mu.Unlock()
	if onIssue != nil {
		onIssue(is)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(lifetime.Seconds()),
		"ext_expires_in": int(lifetime.Seconds()),
		"access_token":   is.Token,
	})
}

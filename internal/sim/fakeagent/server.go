package fakeagent

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
)

// Location ids of the distributedtask routes the listener uses through the SDK's generic Send.
var (
	locSessions    = uuid.MustParse("134e239e-2df3-4794-a6f6-24f1f19ec8dc")
	locMessages    = uuid.MustParse("c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7")
	locJobRequests = uuid.MustParse("fc825784-c92a-4299-9221-998a02d1b54f")
)

const apiVersion = "7.1-preview.1"

// entraScope is the Azure DevOps resource's default scope, as the real agent requests it.
const entraScope = "499b84ac-1321-427f-aa17-267ca6975798/.default"

// tlsConfig builds the TLS settings from --sslcacert / --sslskipcertvalidation (or .certificates).
func tlsConfig(root *agentRoot, caCert string, skip bool) (*tls.Config, error) {
	if caCert == "" && !skip {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: skip} //nolint:gosec // mirrors --sslskipcertvalidation
	if caCert != "" {
		p := caCert
		if !filepath.IsAbs(p) {
			p = filepath.Join(root.dir, p)
		}
		pem, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", p)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func httpClient(cfg *tls.Config, timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if cfg != nil {
		t.TLSClientConfig = cfg
	}
	return &http.Client{Transport: t, Timeout: timeout}
}

func newConnection(serverURL, authorization string, cfg *tls.Config) *azuredevops.Connection {
	timeout := 100 * time.Second
	return &azuredevops.Connection{
		AuthorizationString:     authorization,
		BaseUrl:                 strings.TrimRight(serverURL, "/"),
		SuppressFedAuthRedirect: true,
		TlsConfig:               cfg,
		Timeout:                 &timeout,
	}
}

// serverError is what the SDK returns for a non-2xx answer (it returns both value and pointer forms).
func serverError(err error) (azuredevops.WrappedError, bool) {
	var v azuredevops.WrappedError
	if errors.As(err, &v) {
		return v, true
	}
	var p *azuredevops.WrappedError
	if errors.As(err, &p) && p != nil {
		return *p, true
	}
	return v, false
}

func statusOf(err error) int {
	if we, ok := serverError(err); ok && we.StatusCode != nil {
		return *we.StatusCode
	}
	return 0
}

func typeKeyOf(err error) string {
	if we, ok := serverError(err); ok && we.TypeKey != nil {
		return *we.TypeKey
	}
	return ""
}

// describe turns an error into the text the real agent would print for it.
func describe(err error, serverURL string) string {
	if st := statusOf(err); st == http.StatusUnauthorized {
		return fmt.Sprintf("VS30063: You are not authorized to access %s.", serverURL)
	}
	return err.Error()
}

// connectionData calls _apis/connectionData, the real agent's "test connection".
func connectionData(ctx context.Context, conn *azuredevops.Connection) error {
	c := azuredevops.NewClient(conn, conn.BaseUrl)
	req, err := c.CreateRequestMessage(ctx, http.MethodGet, conn.BaseUrl+"/_apis/connectionData?connectOptions=1&lastChangeId=-1&lastChangeId64=-1", "", nil, "", azuredevops.MediaTypeApplicationJson, nil)
	if err != nil {
		return err
	}
	resp, err := c.SendRequest(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// entraToken gets a service-principal token by client credentials, as the real agent's SP auth does.
func entraToken(ctx context.Context, hc *http.Client, tenant, clientID, secret string) (string, error) {
	authority := os.Getenv("AZURE_AUTHORITY_HOST")
	if authority == "" {
		authority = "https://login.microsoftonline.com/"
	}
	u := strings.TrimRight(authority, "/") + "/" + url.PathEscape(tenant) + "/oauth2/v2.0/token"
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "scope": {entraScope}}
	return postToken(ctx, hc, u, form)
}

func postToken(ctx context.Context, hc *http.Client, u string, form url.Values) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(body, &tok)
	if resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		msg := tok.Error
		if tok.Description != "" {
			msg += ": " + tok.Description
		}
		if msg == "" {
			msg = strings.TrimSpace(string(body))
		}
		return "", &tokenError{status: resp.StatusCode, msg: msg, url: u}
	}
	return tok.AccessToken, nil
}

type tokenError struct {
	status int
	msg    string
	url    string
}

func (e *tokenError) Error() string {
	return fmt.Sprintf("token request to %s failed with status %d: %s", e.url, e.status, e.msg)
}

// oauth issues agent access tokens with a JWT client assertion signed by the agent's RSA key, like
// VssOAuthJwtBearerClientCredential.
type oauth struct {
	hc       *http.Client
	clientID string
	tokenURL string
	key      *rsa.PrivateKey

	mu      sync.Mutex
	token   string
	expires time.Time
}

func (o *oauth) get(ctx context.Context, fresh bool) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !fresh && o.token != "" && time.Until(o.expires) > time.Minute {
		return o.token, nil
	}
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Issuer:    o.clientID,
		Subject:   o.clientID,
		Audience:  jwt.ClaimStrings{o.tokenURL},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)),
		ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		ID:        uuid.NewString(),
	}
	assertion, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(o.key)
	if err != nil {
		return "", err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	tok, err := postToken(ctx, o.hc, o.tokenURL, form)
	if err != nil {
		return "", err
	}
	o.token, o.expires = tok, now.Add(50*time.Minute)
	return tok, nil
}

// agentServer is the run-phase client: sessions, messages and job requests with the OAuth token.
type agentServer struct {
	url    string
	poolID int
	tls    *tls.Config
	auth   *oauth
	hc     *http.Client
}

func (s *agentServer) send(ctx context.Context, method string, loc uuid.UUID, route map[string]string, query url.Values, body any) (*http.Response, error) {
	tok, err := s.auth.get(ctx, false)
	if err != nil {
		return nil, err
	}
	conn := newConnection(s.url, "Bearer "+tok, s.tls)
	c := azuredevops.NewClientWithOptions(conn, conn.BaseUrl, azuredevops.WithHTTPClient(s.hc))
	var r io.Reader
	mediaType := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r, mediaType = bytes.NewReader(b), "application/json"
	}
	if route == nil {
		route = map[string]string{}
	}
	route["poolId"] = strconv.Itoa(s.poolID)
	return c.Send(ctx, method, loc, apiVersion, route, query, r, mediaType, "application/json", nil)
}

func drain(resp *http.Response) {
	if resp != nil && resp.Body != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

type sessionBody struct {
	SessionID          string            `json:"sessionId,omitempty"`
	OwnerName          string            `json:"ownerName"`
	Agent              sessionAgent      `json:"agent"`
	SystemCapabilities map[string]string `json:"systemCapabilities,omitempty"`
}

type sessionAgent struct {
	ID            int    `json:"id"`
	Name          string `json:"name"`
	Version       string `json:"version"`
	OsDescription string `json:"osDescription"`
}

func (s *agentServer) createSession(ctx context.Context, body sessionBody) (string, error) {
	resp, err := s.send(ctx, http.MethodPost, locSessions, nil, nil, body)
	if err != nil {
		return "", err
	}
	defer drain(resp)
	var got sessionBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&got); err != nil {
		return "", fmt.Errorf("decode session: %w", err)
	}
	if got.SessionID == "" {
		return "", errors.New("server returned a session without sessionId")
	}
	return got.SessionID, nil
}

func (s *agentServer) deleteSession(ctx context.Context, id string) error {
	resp, err := s.send(ctx, http.MethodDelete, locSessions, map[string]string{"sessionId": id}, nil, nil)
	drain(resp)
	return err
}

type agentMessage struct {
	MessageID   uint64 `json:"messageId"`
	MessageType string `json:"messageType"`
	Body        string `json:"body"`
}

// getMessage long-polls; nil message means the poll ended without one.
func (s *agentServer) getMessage(ctx context.Context, sessionID string, last uint64) (*agentMessage, error) {
	q := url.Values{"sessionId": {sessionID}}
	if last > 0 {
		q.Set("lastMessageId", strconv.FormatUint(last, 10))
	}
	resp, err := s.send(ctx, http.MethodGet, locMessages, nil, q, nil)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(bytes.TrimPrefix(b, bom))
	if len(b) == 0 || string(b) == "null" {
		return nil, nil
	}
	var m agentMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode message: %w", err)
	}
	return &m, nil
}

func (s *agentServer) deleteMessage(ctx context.Context, sessionID string, id uint64) error {
	resp, err := s.send(ctx, http.MethodDelete, locMessages, map[string]string{"messageId": strconv.FormatUint(id, 10)}, url.Values{"sessionId": {sessionID}}, nil)
	drain(resp)
	return err
}

type jobRequestUpdate struct {
	RequestID  int64      `json:"requestId"`
	FinishTime *time.Time `json:"finishTime,omitempty"`
	Result     string     `json:"result,omitempty"`
}

func (s *agentServer) updateRequest(ctx context.Context, requestID int64, lockToken string, body jobRequestUpdate) error {
	q := url.Values{}
	if lockToken != "" {
		q.Set("lockToken", lockToken)
	}
	resp, err := s.send(ctx, http.MethodPatch, locJobRequests, map[string]string{"requestId": strconv.FormatInt(requestID, 10)}, q, body)
	drain(resp)
	return err
}

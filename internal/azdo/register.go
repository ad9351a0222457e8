package azdo

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/redact"
)

// ErrAgentExists marks an add refused because the pool already holds an agent of that name
// (TaskAgentExistsException, HTTP 409): another container registered it between our lookup and
// our POST.
var ErrAgentExists = errors.New("the pool already holds an agent with that name")

// RegisteredAgent is the server's answer to an add or replace: the agent's id and the OAuth client
// it authenticates as (TaskAgent.authorization.clientId/authorizationUrl) with the key it sent.
type RegisteredAgent struct {
	ID               int
	Name             string
	ClientID         string
	AuthorizationURL string
	// ServerURL is properties.ServerUrl when the server sent one (ConfigurationManager.ConfigureAsync
	// respects it: an agent configured with a collection URL talks to the account URL).
	ServerURL string
}

// PublicKey is the agent key's public half as TaskAgentPublicKey carries it: big-endian bytes,
// which the JSON encoding turns into base64 (RSAParameters.Exponent/Modulus in the real agent).
func PublicKey(k *rsa.PublicKey) *taskagent.TaskAgentPublicKey {
	exp := big.NewInt(int64(k.E)).Bytes()
	mod := k.N.Bytes()
	return &taskagent.TaskAgentPublicKey{Exponent: &exp, Modulus: &mod}
}

// FindAgentForReplace looks an agent up by name the way ConfigurationProvider.GetAgentAsync does
// (AgentServer.GetAgentsAsync: agentName filter, no capabilities) and returns the server's whole
// object, which a replace sends back with a new key (UpdateExistingAgent keeps every other field so
// user capabilities survive). nil, nil when the pool has no such agent.
func (c *Client) FindAgentForReplace(ctx context.Context, poolID int, name string) (*taskagent.TaskAgent, error) {
	ta, err := c.taskagent(ctx)
	if err != nil {
		return nil, c.explain(err, "look up agent "+strconv.Quote(name))
	}
	no := false
	list, err := ta.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID, AgentName: &name, IncludeCapabilities: &no})
	if err != nil {
		return nil, c.explain(err, "look up agent "+strconv.Quote(name))
	}
	if list != nil {
		for i := range *list {
			if a := (*list)[i]; a.Name != nil && strings.EqualFold(*a.Name, name) && a.Id != nil {
				return &a, nil
			}
		}
	}
	return nil, nil
}

// AddAgent registers a new agent (POST distributedtask/pools/{poolId}/agents), as
// ConfigurationProvider.AddAgentAsync does.
func (c *Client) AddAgent(ctx context.Context, poolID int, a *taskagent.TaskAgent) (RegisteredAgent, error) {
	ta, err := c.taskagent(ctx)
	var out *taskagent.TaskAgent
	if err == nil {
		out, err = ta.AddAgent(ctx, taskagent.AddAgentArgs{PoolId: &poolID, Agent: a})
	}
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) && (ae.Status == http.StatusConflict || strings.Contains(ae.TypeKey, "TaskAgentExists")) {
			return RegisteredAgent{}, exit.Runtime(fmt.Errorf("add agent %q: %w: %w", str(a.Name), ErrAgentExists, ae))
		}
		return RegisteredAgent{}, c.explain(err, "add agent "+strconv.Quote(str(a.Name)))
	}
	return registered(out, "add agent "+strconv.Quote(str(a.Name)))
}

// ReplaceAgent gives an existing agent a new key, keeping its id (PUT
// distributedtask/pools/{poolId}/agents/{agentId}; ConfigurationProvider.UpdateAgentAsync, called by
// ConfigureAsync with --replace). The instance that held the old key stops working.
func (c *Client) ReplaceAgent(ctx context.Context, poolID int, a *taskagent.TaskAgent) (RegisteredAgent, error) {
	if a.Id == nil {
		return RegisteredAgent{}, fmt.Errorf("replace agent %q: no id", str(a.Name))
	}
	ta, err := c.taskagent(ctx)
	var out *taskagent.TaskAgent
	if err == nil {
		out, err = ta.ReplaceAgent(ctx, taskagent.ReplaceAgentArgs{PoolId: &poolID, AgentId: a.Id, Agent: a})
	}
	if err != nil {
		return RegisteredAgent{}, c.explain(err, fmt.Sprintf("replace agent %d (%q)", *a.Id, str(a.Name)))
	}
	return registered(out, fmt.Sprintf("replace agent %d (%q)", *a.Id, str(a.Name)))
}

// registered checks the answer as UpdateCredentialData does: without clientId and authorizationUrl
// the server offers no OAuth key exchange, and the real agent would store the PAT itself in
// .credentials. We never store a PAT, so that is an error.
func registered(a *taskagent.TaskAgent, op string) (RegisteredAgent, error) {
	if a == nil || a.Id == nil {
		return RegisteredAgent{}, exit.Runtime(fmt.Errorf("%s: the server answered without the agent's id", op))
	}
	if a.Authorization == nil || a.Authorization.ClientId == nil || *a.Authorization.ClientId == uuid.Nil ||
		a.Authorization.AuthorizationUrl == nil || *a.Authorization.AuthorizationUrl == "" {
		return RegisteredAgent{}, exit.Config(fmt.Errorf("%s: the server offers no OAuth client for the agent (no authorization.clientId/authorizationUrl); servers older than TFS 2017 are not supported, because the agent would have to keep the PAT", op))
	}
	return RegisteredAgent{ID: *a.Id, Name: str(a.Name), ClientID: a.Authorization.ClientId.String(),
		AuthorizationURL: *a.Authorization.AuthorizationUrl, ServerURL: propertyString(a.Properties, "ServerUrl")}, nil
}

// propertyString reads a string from a PropertiesCollection, which the server sends either as
// plain values or as {"$type": ..., "$value": ...}.
func propertyString(props any, key string) string {
	m, ok := props.(map[string]any)
	if !ok {
		return ""
	}
	for k, v := range m {
		if !strings.EqualFold(k, key) {
			continue
		}
		switch t := v.(type) {
		case string:
			return t
		case map[string]any:
			if s, ok := t["$value"].(string); ok {
				return s
			}
		}
	}
	return ""
}

// AgentToken gets an agent access token from the agent's OAuth token service the way the listener
// does (VssOAuthJwtBearerClientCredential over VssOAuthCredential): a client-credentials grant with
// a JWT client assertion signed by the agent's key (iss and sub the client id, aud the
// authorizationUrl), posted to oauthEndpointUrl. It goes over the base transport: the credential of
// this client is never sent to the token service.
func (c *Client) AgentToken(ctx context.Context, tokenURL, audience, clientID string, key *rsa.PrivateKey) (string, error) {
	now := time.Now()
	claims := jwt.RegisteredClaims{
		Issuer: clientID, Subject: clientID, Audience: jwt.ClaimStrings{audience}, ID: uuid.NewString(),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)),
	}
	assertion, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("sign the agent's client assertion: %w", err)
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	rctx, cancel := context.WithTimeout(ctx, c.o.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", exit.Runtime(fmt.Errorf("agent token service %s: %w", redact.URL(tokenURL), err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.base.Do(req)
	if err != nil {
		return "", exit.Runtime(fmt.Errorf("agent token service %s: %w", redact.URL(tokenURL), err))
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
		msg := strings.TrimSpace(tok.Error + ": " + tok.Description)
		if tok.Error == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		hint := ""
		if strings.Contains(tok.Description, "Current server time is") {
			// ConfigurationManager.ConfigureAsync: the server's answer names a clock skew.
			hint = "; the local clock is skewed: fix the host's time"
		}
		return "", exit.Runtime(fmt.Errorf("agent token service %s refused the agent's key (HTTP %d: %s)%s", redact.URL(tokenURL), resp.StatusCode, msg, hint))
	}
	return tok.AccessToken, nil
}

// TestAgentConnection is ConfigureAsync's test connection: an agent token from the key just
// registered, then connectionData with it. It catches a server that did not take the key, and
// clock skew, before any file is written.
func (c *Client) TestAgentConnection(ctx context.Context, serverURL, tokenURL, audience, clientID string, key *rsa.PrivateKey) error {
	tok, err := c.AgentToken(ctx, tokenURL, audience, clientID, key)
	if err != nil {
		return err
	}
	o := c.o
	o.URL = serverURL
	o.HTTPClient = c.base
	o.Auth = func(context.Context) (string, error) { return "Bearer " + tok, nil }
	ac, err := New(ctx, o)
	if err != nil {
		return err
	}
	_, err = ac.Connect(ctx)
	return err
}

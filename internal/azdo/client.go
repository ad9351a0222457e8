// Package azdo is the entrypoint's Azure DevOps REST client: pools, agents, agent packages and job
// requests, on the azure-devops-go-api v7 SDK with a go-retryablehttp transport.
//
// Every call is bounded by the caller's context and retried with backoff on 5xx, on 429 (honouring
// Retry-After) and on refused or dropped connections (for at most Options.UnreachableFor). Server
// answers become errors a user can act on, marked with the contract's exit kinds (internal/exit).
// Registration (add or replace an agent with its public key, register.go) follows the real agent's
// ConfigurationManager, so no `configure` child process ever holds the credential. It never logs a
// credential: the Authorization header is set per request from Options.Auth and never stored.
package azdo

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/location"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// Options configure a Client.
type Options struct {
	URL string
	// Auth returns the Authorization header value ("Basic ..." or "Bearer ..."); it is called once
	// per HTTP request, so a provider that re-reads its source sees a rotated credential.
	Auth       func(ctx context.Context) (string, error)
	HTTPClient *http.Client // base transport (CA bundle, proxy); nil: HTTPClient(nil)
	Logger     *slog.Logger
	// UnreachableFor bounds the retries of refused, dropped or timed-out connections and DNS
	// failures (contract: 2 minutes).
	UnreachableFor time.Duration
	MaxRetries     int           // retries of 5xx answers; default 5
	RateLimitFor   time.Duration // how long 429 answers are retried, honouring Retry-After; default 10m
	RetryWaitMin   time.Duration // default 500ms
	RetryWaitMax   time.Duration // default 15s
	RequestTimeout time.Duration // per attempt; default 60s
}

// Client talks to one organisation or collection.
type Client struct {
	url    string
	host   string
	base   *http.Client // without the credential: for the agent's own OAuth token service
	o      Options
	logger *slog.Logger
	http   *http.Client

	mu  sync.Mutex
	sdk *azuredevops.Client // the area client, resolved at first use
}

var (
	// ErrNotFound marks an agent or resource the server does not know.
	ErrNotFound = errors.New("not found")
	// ErrAgentInUse marks a refused deletion of an agent that still holds a job.
	ErrAgentInUse = errors.New("agent is running a job")
)

// New validates the URL and prepares the client; it performs no I/O.
func New(ctx context.Context, o Options) (*Client, error) {
	raw := strings.TrimSpace(o.URL)
	u, err := url.Parse(raw)
	if raw == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, exit.Config(fmt.Errorf("AZP_URL = %q: not an organisation URL (use https://dev.azure.com/<org> or https://<server>/<collection>)", raw))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.UnreachableFor <= 0 {
		o.UnreachableFor = 2 * time.Minute
	}
	if o.MaxRetries <= 0 {
		o.MaxRetries = 5
	}
	if o.RateLimitFor <= 0 {
		o.RateLimitFor = 10 * time.Minute
	}
	if o.RetryWaitMin <= 0 {
		o.RetryWaitMin = 500 * time.Millisecond
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = 15 * time.Second
	}
	if o.RetryWaitMax < o.RetryWaitMin {
		o.RetryWaitMax = o.RetryWaitMin
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 60 * time.Second
	}
	base := o.HTTPClient
	if base == nil {
		if base, err = HTTPClient(nil); err != nil {
			return nil, err
		}
	}
	rc := newRetryClient(base, o, o.Logger)
	c := &Client{
		url:    strings.TrimRight(raw, "/"),
		host:   u.Host,
		base:   base,
		o:      o,
		logger: o.Logger,
		http: &http.Client{
			Transport: &transport{auth: o.Auth, retry: &retryablehttp.RoundTripper{Client: rc}, logger: o.Logger},
			// The SDK suppresses sign-in redirects; a redirect now is a wrong URL, not a login page.
			CheckRedirect: func(req *http.Request, via []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	return c, nil
}

// URL is the organisation URL the client talks to.
func (c *Client) URL() string { return c.url }

// Resource areas and locations the client uses.
var (
	locPackages    = uuid.MustParse("8ffcd551-079c-493a-9c02-54346299d144")
	locJobRequests = uuid.MustParse("fc825784-c92a-4299-9221-998a02d1b54f")
	locAgents      = uuid.MustParse("e298ef32-5878-4cab-993c-043836571f42")
)

// area returns the SDK client for the distributedtask area. Hosted organisations list their
// resource areas; on-premises servers return none, and then the organisation URL serves them all.
func (c *Client) area(ctx context.Context) (*azuredevops.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sdk != nil {
		return c.sdk, nil
	}
	conn := &azuredevops.Connection{BaseUrl: c.url, SuppressFedAuthRedirect: true, UserAgent: "azp-entrypoint"}
	root := azuredevops.NewClientWithOptions(conn, c.url, azuredevops.WithHTTPClient(c.http))
	areas, err := root.GetResourceAreas(ctx)
	if err != nil {
		return nil, err
	}
	base := c.url
	if areas != nil {
		for _, a := range *areas {
			if a.Id != nil && *a.Id == taskagent.ResourceAreaId && a.LocationUrl != nil && *a.LocationUrl != "" {
				base = strings.TrimRight(*a.LocationUrl, "/")
			}
		}
	}
	c.sdk = azuredevops.NewClientWithOptions(conn, base, azuredevops.WithHTTPClient(c.http))
	return c.sdk, nil
}

func (c *Client) taskagent(ctx context.Context) (*taskagent.ClientImpl, error) {
	sdk, err := c.area(ctx)
	if err != nil {
		return nil, err
	}
	return &taskagent.ClientImpl{Client: *sdk}, nil
}

// Connect proves that the URL is an Azure DevOps organisation and that the credential is accepted;
// it returns the authenticated identity's display name.
func (c *Client) Connect(ctx context.Context) (string, error) {
	sdk, err := c.area(ctx)
	if err != nil {
		return "", c.explain(err, "connect to the organisation")
	}
	lc := &location.ClientImpl{Client: *sdk}
	cd, err := lc.GetConnectionData(ctx, location.GetConnectionDataArgs{})
	if err != nil {
		return "", c.explain(err, "connect to the organisation")
	}
	if cd != nil && cd.AuthenticatedUser != nil {
		for _, n := range []*string{cd.AuthenticatedUser.ProviderDisplayName, cd.AuthenticatedUser.CustomDisplayName} {
			if n != nil && *n != "" {
				return *n, nil
			}
		}
	}
	return "", nil
}

// Pool is an agent pool.
type Pool struct {
	ID   int
	Name string
}

// Pool resolves a pool by name. An unknown pool is a configuration error naming the pool and URL.
func (c *Client) Pool(ctx context.Context, name string) (Pool, error) {
	ta, err := c.taskagent(ctx)
	if err != nil {
		return Pool{}, c.explain(err, "look up agent pool "+strconv.Quote(name))
	}
	pt := taskagent.TaskAgentPoolTypeValues.Automation
	pools, err := ta.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{PoolName: &name, PoolType: &pt})
	if err != nil {
		return Pool{}, c.explain(err, "look up agent pool "+strconv.Quote(name))
	}
	if pools != nil {
		for _, p := range *pools {
			if p.Name != nil && p.Id != nil && strings.EqualFold(*p.Name, name) {
				return Pool{ID: *p.Id, Name: *p.Name}, nil
			}
		}
	}
	return Pool{}, exit.Config(fmt.Errorf("AZP_POOL = %q: no such agent pool at %s (check the name under Organization settings > Agent pools; the credential must also be allowed to see the pool)", name, c.url))
}

// send issues a request whose answer body is not needed, closing it.
func (c *Client) send(ctx context.Context, method string, loc uuid.UUID, route map[string]string, q url.Values, out any) error {
	sdk, err := c.area(ctx)
	if err != nil {
		return err
	}
	resp, err := sdk.Send(ctx, method, loc, "7.1-preview.1", route, q, nil, "", "application/json", nil)
	if err != nil {
		return err
	}
	if out != nil {
		return sdk.UnmarshalCollectionBody(resp, out)
	}
	resp.Body.Close()
	return nil
}

// explain turns a failure into a sentence that says what happened and what to do, marked with
// its exit kind.
func (c *Client) explain(err error, op string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return exit.Runtime(fmt.Errorf("%s at %s: %w", op, c.url, err))
	}
	var ae *Error
	if errors.As(err, &ae) {
		switch {
		case ae.Status == http.StatusUnauthorized:
			return exit.Auth(fmt.Errorf("%s: %s rejected the credential (HTTP 401): the token is invalid or expired, or the service principal is not a member of the organisation; renew AZP_TOKEN / AZP_TOKEN_FILE / the secret's AZP_TOKEN, or add the service principal to the organisation: %w", op, c.url, ae))
		case ae.Status == http.StatusForbidden:
			return exit.Auth(fmt.Errorf("%s: %s refused (HTTP 403): the credential lacks the Agent Pools (read & manage) permission: %w", op, c.url, ae))
		case ae.Status == http.StatusNotFound:
			return exit.Runtime(fmt.Errorf("%s: %w: %w", op, ErrNotFound, ae))
		case strings.Contains(ae.TypeKey, "AgentInUse") || strings.Contains(ae.Message, "running a job"):
			return exit.Runtime(fmt.Errorf("%s: %w: %w", op, ErrAgentInUse, ae))
		case ae.Status == http.StatusTooManyRequests:
			return exit.Runtime(fmt.Errorf("%s: %s kept rate-limiting the requests (HTTP 429) for %s: %w", op, c.url, c.o.RateLimitFor, ae))
		case ae.Status >= 500:
			return exit.Runtime(fmt.Errorf("%s: %s kept failing (HTTP %d) after %d retries: %w", op, c.url, ae.Status, c.o.MaxRetries, ae))
		case ae.Status >= 300 && ae.Status < 400:
			return exit.Config(fmt.Errorf("%s: %s answered with a redirect (HTTP %d); check AZP_URL (it must be the organisation URL, e.g. https://dev.azure.com/<org>): %w", op, c.url, ae.Status, ae))
		}
		return exit.Runtime(fmt.Errorf("%s: %w", op, ae))
	}
	if isTLSError(err) {
		var ua x509.UnknownAuthorityError
		hint := "if the server uses a private CA, set AZP_CA_CERT_FILE to a PEM bundle that holds it"
		if !errors.As(err, &ua) {
			hint = "check the certificate of " + c.host + "; for a private CA set AZP_CA_CERT_FILE to a PEM bundle that holds it"
		}
		return exit.Runtime(fmt.Errorf("%s: TLS connection to %s failed: %w (%s)", op, c.host, err, hint))
	}
	var ce *credentialError
	if errors.As(err, &ce) {
		// The credential could not be obtained; its error already says why and has its kind.
		if exit.Kind(ce.err) != nil {
			return fmt.Errorf("%s: %w", op, ce.err)
		}
		return exit.Runtime(fmt.Errorf("%s: obtaining the credential: %w", op, ce.err))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return exit.Config(fmt.Errorf("%s: %s did not answer like Azure DevOps (%v); check AZP_URL: it must be the organisation or collection URL, e.g. https://dev.azure.com/<org>", op, c.url, err))
	}
	var ue *url.Error
	if isNetError(err) || errors.As(err, &ue) {
		return exit.Runtime(fmt.Errorf("%s: cannot reach %s (host %s) after retrying for %s: %w; check AZP_URL, DNS, the network route and the proxy settings (HTTPS_PROXY/NO_PROXY)", op, c.url, c.host, c.o.UnreachableFor, unwrapURL(err)))
	}
	return exit.Runtime(fmt.Errorf("%s at %s: %w", op, c.url, err))
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

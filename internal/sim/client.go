package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ControlClient drives a running simulator's /_sim/ control API over HTTP (for the azp-sim CLI
// and for tests that run the simulator in another process).
type ControlClient struct {
	base string
	hc   *http.Client
}

// NewControlClient returns a client for the simulator at baseURL (Server.URL(); an org URL also
// works, its path is ignored). hc nil means http.DefaultClient.
func NewControlClient(baseURL string, hc *http.Client) *ControlClient {
	if hc == nil {
		hc = http.DefaultClient
	}
	if u, err := url.Parse(baseURL); err == nil && u.Host != "" {
		baseURL = u.Scheme + "://" + u.Host
	}
	return &ControlClient{base: strings.TrimRight(baseURL, "/"), hc: hc}
}

func (c *ControlClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		buf, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/_sim/"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("sim control %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("sim control %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("sim control %s %s: %s: %w", method, path, e.Error, ErrNotFound)
		}
		return fmt.Errorf("sim control %s %s: HTTP %d: %s", method, path, resp.StatusCode, e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("sim control %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// AddPool creates (or finds) a pool and returns its id.
func (c *ControlClient) AddPool(ctx context.Context, name string) (int, error) {
	var out struct {
		ID int `json:"id"`
	}
	err := c.do(ctx, http.MethodPost, "pools", map[string]string{"name": name}, &out)
	return out.ID, err
}

// AddToken registers a token with a scope ("manage" or "read").
func (c *ControlClient) AddToken(ctx context.Context, token, scope string) error {
	return c.do(ctx, http.MethodPost, "tokens", map[string]string{"token": token, "scope": scope}, nil)
}

// RemoveToken revokes a token.
func (c *ControlClient) RemoveToken(ctx context.Context, token string) error {
	return c.do(ctx, http.MethodDelete, "tokens/"+url.PathEscape(token), nil, nil)
}

// QueueJob queues a job and returns the request id.
func (c *ControlClient) QueueJob(ctx context.Context, spec JobSpec) (int64, error) {
	var out struct {
		RequestID int64 `json:"requestId"`
	}
	err := c.do(ctx, http.MethodPost, "jobs", spec, &out)
	return out.RequestID, err
}

// CancelJob cancels a job request.
func (c *ControlClient) CancelJob(ctx context.Context, id int64) error {
	return c.do(ctx, http.MethodPost, "jobs/"+strconv.FormatInt(id, 10)+"/cancel", nil, nil)
}

// Agents lists the agents of a pool ("" for all).
func (c *ControlClient) Agents(ctx context.Context, pool string) ([]AgentView, error) {
	var out []AgentView
	err := c.do(ctx, http.MethodGet, "agents?pool="+url.QueryEscape(pool), nil, &out)
	return out, err
}

// DeleteAgent removes an agent server-side.
func (c *ControlClient) DeleteAgent(ctx context.Context, pool, name string) error {
	return c.do(ctx, http.MethodDelete, "agents/"+url.PathEscape(pool)+"/"+url.PathEscape(name), nil, nil)
}

// SetAgentEnabled enables or disables an agent server-side.
func (c *ControlClient) SetAgentEnabled(ctx context.Context, pool, name string, enabled bool) error {
	return c.do(ctx, http.MethodPost, "agents/"+url.PathEscape(pool)+"/"+url.PathEscape(name)+"/enabled",
		map[string]bool{"enabled": enabled}, nil)
}

// Requests lists the job requests.
func (c *ControlClient) Requests(ctx context.Context) ([]RequestView, error) {
	var out []RequestView
	err := c.do(ctx, http.MethodGet, "requests", nil, &out)
	return out, err
}

// RequestUpdate asks an agent to update to version.
func (c *ControlClient) RequestUpdate(ctx context.Context, agentName, version string) error {
	return c.do(ctx, http.MethodPost, "agents/"+url.PathEscape(agentName)+"/update", map[string]string{"version": version}, nil)
}

// Script sends an agent a SimScript message.
func (c *ControlClient) Script(ctx context.Context, agentName string, script map[string]any) error {
	return c.do(ctx, http.MethodPost, "agents/"+url.PathEscape(agentName)+"/script", script, nil)
}

// Fault installs a fault and returns its id.
func (c *ControlClient) Fault(ctx context.Context, f FaultSpec) (int, error) {
	var out struct {
		ID int `json:"id"`
	}
	err := c.do(ctx, http.MethodPost, "faults", f, &out)
	return out.ID, err
}

// ClearFaults removes every fault.
func (c *ControlClient) ClearFaults(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "faults", nil, nil)
}

// RateLimit adds a rate limit.
func (c *ControlClient) RateLimit(ctx context.Context, r RateLimitSpec) error {
	return c.do(ctx, http.MethodPost, "ratelimits", r, nil)
}

// ClearRateLimits removes every rate limit.
func (c *ControlClient) ClearRateLimits(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "ratelimits", nil, nil)
}

// AddPackage registers a package; FilePath must be readable by the simulator process.
func (c *ControlClient) AddPackage(ctx context.Context, p PackageSpec) error {
	return c.do(ctx, http.MethodPost, "packages", p, nil)
}

// RequestLog returns the wire requests the simulator saw.
func (c *ControlClient) RequestLog(ctx context.Context) ([]LoggedRequest, error) {
	var out []LoggedRequest
	err := c.do(ctx, http.MethodGet, "log", nil, &out)
	return out, err
}

// ResetRequestLog forgets the logged requests.
func (c *ControlClient) ResetRequestLog(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "log", nil, nil)
}

// SeedAgents adds many agents with a fixed status.
func (c *ControlClient) SeedAgents(ctx context.Context, spec SeedSpec) error {
	return c.do(ctx, http.MethodPost, "seed", spec, nil)
}

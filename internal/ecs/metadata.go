// Package ecs talks to the two endpoints ECS gives every container: task metadata v4
// (ECS_CONTAINER_METADATA_URI_V4: task ARN, cluster, container name, used to name the agent) and
// the ECS agent's task scale-in protection endpoint (ECS_AGENT_URI, held while a job runs).
//
// It only reads metadata and sets protection for its own task. It never reads or hands out the
// task role's credentials (that is the AWS SDK's business) and never decides anything fatal:
// protection failures are for the caller to log as warnings, because an agent that cannot be
// protected still runs jobs. Fakes of all these endpoints live in internal/ecs/ecstest.
package ecs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Environment variables ECS sets in every container.
const (
	EnvMetadataURIV4 = "ECS_CONTAINER_METADATA_URI_V4"
	EnvAgentURI      = "ECS_AGENT_URI"
)

// Client reads task metadata v4.
type Client struct {
	uri  string
	http *http.Client
	// Attempts and Backoff bound the retries of transient failures (transport errors, 5xx, 429).
	Attempts int
	Backoff  time.Duration
}

// FromEnv returns a Client when ECS_CONTAINER_METADATA_URI_V4 is set, that is when running in an
// ECS task; ok is false elsewhere.
func FromEnv(getenv func(string) string) (c *Client, ok bool) {
	uri := strings.TrimSpace(getenv(EnvMetadataURIV4))
	if uri == "" {
		return nil, false
	}
	return NewClient(uri, nil), true
}

// NewClient returns a metadata client for uri (the value of ECS_CONTAINER_METADATA_URI_V4). A nil
// httpClient gets one with a short timeout: the endpoint is link-local and answers at once or not
// at all.
func NewClient(uri string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = directClient(5 * time.Second)
	}
	return &Client{uri: strings.TrimRight(uri, "/"), http: httpClient, Attempts: 3, Backoff: 200 * time.Millisecond}
}

// Task is the part of GET $ECS_CONTAINER_METADATA_URI_V4/task the entrypoint uses.
type Task struct {
	TaskARN          string      `json:"TaskARN"`
	Cluster          string      `json:"Cluster"`
	Family           string      `json:"Family"`
	Revision         string      `json:"Revision"`
	ServiceName      string      `json:"ServiceName,omitempty"`
	AvailabilityZone string      `json:"AvailabilityZone"`
	LaunchType       string      `json:"LaunchType"`
	DesiredStatus    string      `json:"DesiredStatus,omitempty"`
	KnownStatus      string      `json:"KnownStatus,omitempty"`
	Containers       []Container `json:"Containers"`
}

// ID is the task ID, the last segment of the task ARN.
func (t Task) ID() string { return TaskID(t.TaskARN) }

// Container is one container's metadata (GET $ECS_CONTAINER_METADATA_URI_V4 for our own).
type Container struct {
	DockerID     string `json:"DockerId"`
	Name         string `json:"Name"`
	DockerName   string `json:"DockerName"`
	Image        string `json:"Image"`
	ImageID      string `json:"ImageID"`
	ContainerARN string `json:"ContainerARN,omitempty"`
}

// Task fetches the task metadata.
func (c *Client) Task(ctx context.Context) (Task, error) {
	var t Task
	if err := c.get(ctx, c.uri+"/task", &t); err != nil {
		return Task{}, err
	}
	if t.TaskARN == "" {
		return Task{}, fmt.Errorf("ECS task metadata %s/task: no TaskARN in the response", c.uri)
	}
	return t, nil
}

// Container fetches this container's metadata.
func (c *Client) Container(ctx context.Context) (Container, error) {
	var ct Container
	if err := c.get(ctx, c.uri, &ct); err != nil {
		return Container{}, err
	}
	if ct.Name == "" {
		return Container{}, fmt.Errorf("ECS container metadata %s: no Name in the response", c.uri)
	}
	return ct, nil
}

func (c *Client) get(ctx context.Context, url string, into any) error {
	return retry(ctx, c.Attempts, c.Backoff, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, fmt.Errorf("ECS task metadata: bad %s %q: %w", EnvMetadataURIV4, c.uri, err)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return true, fmt.Errorf("ECS task metadata GET %s: %w", url, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return true, fmt.Errorf("ECS task metadata GET %s: %w", url, err)
		}
		if resp.StatusCode != http.StatusOK {
			return transientStatus(resp.StatusCode), fmt.Errorf("ECS task metadata GET %s: %s: %s",
				url, resp.Status, snippet(body))
		}
		if err := json.Unmarshal(body, into); err != nil {
			return false, fmt.Errorf("ECS task metadata GET %s: decode: %w", url, err)
		}
		return false, nil
	})
}

// directClient talks to the ECS agent's link-local endpoints, which a proxy configured for the
// internet (HTTP_PROXY, HTTPS_PROXY) cannot reach: it never uses one.
func directClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return &http.Client{Timeout: timeout, Transport: t}
}

// TaskID returns the task ID from a task ARN: the last path segment of
// arn:aws:ecs:region:account:task/cluster/ID (or the old task/ID form).
func TaskID(taskARN string) string {
	if i := strings.LastIndexByte(taskARN, '/'); i >= 0 {
		return taskARN[i+1:]
	}
	return taskARN
}

// retry runs op up to attempts times while it reports a transient error, waiting backoff,
// then twice that, between tries.
func retry(ctx context.Context, attempts int, backoff time.Duration, op func() (transient bool, err error)) error {
	if attempts < 1 {
		attempts = 1
	}
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(backoff << (i - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(err, ctx.Err())
			case <-t.C:
			}
		}
		var transient bool
		transient, err = op()
		if err == nil || !transient || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func transientStatus(code int) bool {
	return code == http.StatusTooManyRequests || code >= 500
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}

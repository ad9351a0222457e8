// Package ecstest is a loopback fake of the endpoints ECS gives a container, speaking their wire
// format: task metadata v4, the ECS agent's task scale-in protection endpoint and the container
// credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI style, as the AWS SDKs read it).
//
// It records every protection change with its time, so tests can assert "protected while a job
// ran, unprotected after", and can inject faults per route. It is for tests and demos only and
// never talks to AWS.
package ecstest

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Route names a fake endpoint, for faults and the request log.
type Route string

const (
	RouteContainer   Route = "metadata-container" // GET /v4/<id>
	RouteTask        Route = "metadata-task"      // GET /v4/<id>/task
	RouteProtection  Route = "task-protection"    // GET/PUT /api/<id>/task-protection/v1/state
	RouteCredentials Route = "credentials"        // GET /v2/credentials/<id>
)

// Options describe the fake task. Zero values get sensible defaults.
type Options struct {
	Region          string // default eu-west-1
	Account         string // default 123456789012
	Cluster         string // short name; default azp-agents
	TaskID          string // default 0123456789abcdef0123456789abcdef
	Family          string // default azp-agent
	Revision        string // default 7
	ServiceName     string // default azp-agents; empty when Standalone
	ContainerName   string // our container; default agent
	OtherContainers []string
	LaunchType      string // default FARGATE
	AZ              string // default <region>a
	ImageID         string // default a sha256 digest

	// Standalone makes the task a standalone task: protection answers TASK_NOT_VALID.
	Standalone bool

	// Credentials served at the credentials endpoint; defaults are fake but well-formed.
	AccessKeyID, SecretAccessKey, SessionToken, RoleArn string
	// AuthToken is required in the Authorization header of credential requests (as with
	// AWS_CONTAINER_AUTHORIZATION_TOKEN); default "ecstest-token". NoAuthToken turns the check
	// (and the variable) off.
	AuthToken   string
	NoAuthToken bool

	// Now is the clock for protection expiry; default time.Now.
	Now func() time.Time
}

// Fault is an injected answer for the next requests of a route.
type Fault struct {
	Status int    // HTTP status to answer with (default 500)
	Body   string // raw body; default a JSON error matching the route
	// Delay before answering (with Status 0 and empty Body the request is then served normally).
	Delay time.Duration
	// Drop closes the connection without an answer.
	Drop bool
}

// ProtectionChange is one accepted PUT to the protection endpoint.
type ProtectionChange struct {
	Time             time.Time
	Enabled          bool
	ExpiresInMinutes int // as requested; 0 when omitted
	ExpirationDate   time.Time
}

// Request is one request the fake received.
type Request struct {
	Time   time.Time
	Method string
	Path   string
	Route  Route
	Status int
}

// Server is the fake. Create it with New; Close it when done.
type Server struct {
	opts Options
	srv  *httptest.Server

	// URL is the base URL (http://127.0.0.1:port).
	URL string
	// MetadataURI is ECS_CONTAINER_METADATA_URI_V4, AgentURI is ECS_AGENT_URI and
	// CredentialsURI is AWS_CONTAINER_CREDENTIALS_FULL_URI.
	MetadataURI, AgentURI, CredentialsURI string

	mu          sync.Mutex
	faults      map[Route][]Fault
	protErr     *protectionErrorBody
	protected   bool
	expiration  time.Time
	changes     []ProtectionChange
	requests    []Request
	credentials int
}

// New starts the fake on 127.0.0.1 (the AWS SDKs accept plain-http FULL_URI only for loopback).
func New(opts Options) *Server {
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&opts.Region, "eu-west-1")
	def(&opts.Account, "123456789012")
	def(&opts.Cluster, "azp-agents")
	def(&opts.TaskID, "0123456789abcdef0123456789abcdef")
	def(&opts.Family, "azp-agent")
	def(&opts.Revision, "7")
	if !opts.Standalone {
		def(&opts.ServiceName, "azp-agents")
	}
	def(&opts.ContainerName, "agent")
	def(&opts.LaunchType, "FARGATE")
	def(&opts.AZ, opts.Region+"a")
	def(&opts.ImageID, "sha256:"+strings.Repeat("ab", 32))
	def(&opts.AccessKeyID, "ASIAECSTESTFAKEKEY01")
	def(&opts.SecretAccessKey, "ecstest/fake/secret/access/key/000000000")
	def(&opts.SessionToken, "ecstest-fake-session-token")
	def(&opts.RoleArn, "arn:aws:iam::"+opts.Account+":role/azp-agent-task")
	if !opts.NoAuthToken {
		def(&opts.AuthToken, "ecstest-token")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	s := &Server{opts: opts, faults: map[Route][]Fault{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("ecstest: listen on loopback: %v", err))
	}
	s.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(s.serve)}}
	s.srv.Start()
	s.URL = s.srv.URL
	s.MetadataURI = s.URL + "/v4/" + opts.TaskID + "-1234567890"
	s.AgentURI = s.URL + "/api/" + opts.TaskID
	s.CredentialsURI = s.URL + "/v2/credentials/" + opts.TaskID
	return s
}

// Close stops the fake.
func (s *Server) Close() { s.srv.Close() }

// Env is what ECS would put into the container's environment, pointed at the fake.
func (s *Server) Env() map[string]string {
	env := map[string]string{
		"ECS_CONTAINER_METADATA_URI_V4":      s.MetadataURI,
		"ECS_AGENT_URI":                      s.AgentURI,
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": s.CredentialsURI,
		"AWS_REGION":                         s.opts.Region,
		"AWS_DEFAULT_REGION":                 s.opts.Region,
	}
	if !s.opts.NoAuthToken {
		env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = s.opts.AuthToken
	}
	return env
}

// Environ is Env as KEY=VALUE lines for exec.Cmd.Env.
func (s *Server) Environ() []string {
	var out []string
	for k, v := range s.Env() {
		out = append(out, k+"="+v)
	}
	return out
}

// TaskARN is the fake task's ARN (long format).
func (s *Server) TaskARN() string {
	return "arn:aws:ecs:" + s.opts.Region + ":" + s.opts.Account + ":task/" + s.opts.Cluster + "/" + s.opts.TaskID
}

// TaskID and ContainerName are the fake's identity, for expected agent names.
func (s *Server) TaskID() string { return s.opts.TaskID }

func (s *Server) ContainerName() string { return s.opts.ContainerName }

// Requests lists every request received.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// CredentialRequests counts successful credential fetches.
func (s *Server) CredentialRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.credentials
}

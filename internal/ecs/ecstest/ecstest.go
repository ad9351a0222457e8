// Package ecstest is a loopback fake of the endpoints ECS gives a container, speaking their wire
// format: task metadata v4, the ECS agent's task scale-in protection endpoint and the container
// credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI style, as the AWS SDKs read it).
//
// It records every protection change with its time, so tests can assert "protected while a job
// ran, unprotected after", and can inject faults per route. It is for tests and demos only and
// never talks to AWS.
package ecstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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

type protectionErrorBody struct{ Code, Message string }

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
func (s *Server) TaskID() string        { return s.opts.TaskID }
func (s *Server) ContainerName() string { return s.opts.ContainerName }

// Fail queues faults for the next requests of route, one per request.
func (s *Server) Fail(route Route, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = append(s.faults[route], faults...)
}

// FailN queues n identical faults.
func (s *Server) FailN(route Route, n int, f Fault) {
	for i := 0; i < n; i++ {
		s.Fail(route, f)
	}
}

// SetProtectionError makes every protection request answer with the endpoint's error shape
// (for example "AccessDeniedException" when the task role lacks ecs:UpdateTaskProtection) until
// it is called with an empty code.
func (s *Server) SetProtectionError(code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == "" {
		s.protErr = nil
		return
	}
	s.protErr = &protectionErrorBody{Code: code, Message: message}
}

// ProtectionChanges lists every accepted protection PUT in order.
func (s *Server) ProtectionChanges() []ProtectionChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ProtectionChange(nil), s.changes...)
}

// Protected reports whether the task is protected now (expiry applied).
func (s *Server) Protected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protectedLocked()
}

func (s *Server) protectedLocked() bool {
	if s.protected && !s.opts.Now().Before(s.expiration) {
		s.protected = false
		s.expiration = time.Time{}
	}
	return s.protected
}

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

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) route(path string) (Route, bool) {
	meta := strings.TrimPrefix(s.MetadataURI, s.URL)
	agent := strings.TrimPrefix(s.AgentURI, s.URL)
	creds := strings.TrimPrefix(s.CredentialsURI, s.URL)
	switch path {
	case meta:
		return RouteContainer, true
	case meta + "/task":
		return RouteTask, true
	case agent + "/task-protection/v1/state":
		return RouteProtection, true
	case creds:
		return RouteCredentials, true
	}
	return "", false
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := &recorder{ResponseWriter: w}
	route, ok := s.route(r.URL.Path)
	// Logged on arrival, so a client that retries after a dropped connection never sees its
	// retry logged before the first try; the status is filled in when the answer is written.
	s.mu.Lock()
	idx := len(s.requests)
	s.requests = append(s.requests, Request{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Route: route})
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.requests[idx].Status = rec.status
		s.mu.Unlock()
	}()
	if !ok {
		http.NotFound(rec, r)
		return
	}
	if s.fault(rec, r, route) {
		return
	}
	switch route {
	case RouteContainer:
		s.onlyGet(rec, r, func() { writeJSON(rec, http.StatusOK, s.container(s.opts.ContainerName, 0)) })
	case RouteTask:
		s.onlyGet(rec, r, func() { writeJSON(rec, http.StatusOK, s.task()) })
	case RouteProtection:
		s.protection(rec, r)
	case RouteCredentials:
		s.onlyGet(rec, r, func() { s.creds(rec, r) })
	}
}

// fault applies the next queued fault of route; it reports whether the request was answered.
func (s *Server) fault(w http.ResponseWriter, r *http.Request, route Route) bool {
	s.mu.Lock()
	q := s.faults[route]
	if len(q) == 0 {
		s.mu.Unlock()
		return false
	}
	f := q[0]
	s.faults[route] = q[1:]
	s.mu.Unlock()
	if f.Delay > 0 {
		// Read the body first: only then does net/http notice a client that gives up and
		// cancel r.Context(), which ends the delay.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return true
		}
		if f.Status == 0 && f.Body == "" && !f.Drop {
			return false
		}
	}
	if f.Drop {
		if hj, ok := w.(*recorder).ResponseWriter.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	body := f.Body
	if body == "" {
		if route == RouteProtection {
			body = s.protectionErrorJSON("ServerException", "ecstest: injected fault")
		} else {
			body = `{"code":"InternalError","message":"ecstest: injected fault"}`
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
	return true
}

func (s *Server) onlyGet(w http.ResponseWriter, r *http.Request, f func()) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f()
}

type containerJSON struct {
	DockerID      string            `json:"DockerId"`
	Name          string            `json:"Name"`
	DockerName    string            `json:"DockerName"`
	Image         string            `json:"Image"`
	ImageID       string            `json:"ImageID"`
	Labels        map[string]string `json:"Labels"`
	DesiredStatus string            `json:"DesiredStatus"`
	KnownStatus   string            `json:"KnownStatus"`
	Limits        map[string]int    `json:"Limits"`
	CreatedAt     string            `json:"CreatedAt"`
	StartedAt     string            `json:"StartedAt"`
	Type          string            `json:"Type"`
	ContainerARN  string            `json:"ContainerARN"`
	LogDriver     string            `json:"LogDriver"`
	LogOptions    map[string]string `json:"LogOptions"`
	Networks      []map[string]any  `json:"Networks"`
}

func (s *Server) container(name string, i int) containerJSON {
	o := s.opts
	id := fmt.Sprintf("%s-%010d", o.TaskID, 1234567890+i)
	return containerJSON{
		DockerID:   id,
		Name:       name,
		DockerName: name,
		Image:      "123456789012.dkr.ecr." + o.Region + ".amazonaws.com/azp-agent:latest",
		ImageID:    o.ImageID,
		Labels: map[string]string{
			"com.amazonaws.ecs.cluster":                 "arn:aws:ecs:" + o.Region + ":" + o.Account + ":cluster/" + o.Cluster,
			"com.amazonaws.ecs.container-name":          name,
			"com.amazonaws.ecs.task-arn":                s.TaskARN(),
			"com.amazonaws.ecs.task-definition-family":  o.Family,
			"com.amazonaws.ecs.task-definition-version": o.Revision,
		},
		DesiredStatus: "RUNNING",
		KnownStatus:   "RUNNING",
		Limits:        map[string]int{"CPU": 1024, "Memory": 2048},
		CreatedAt:     "2024-01-01T00:00:00Z",
		StartedAt:     "2024-01-01T00:00:01Z",
		Type:          "NORMAL",
		ContainerARN:  "arn:aws:ecs:" + o.Region + ":" + o.Account + ":container/" + o.Cluster + "/" + o.TaskID + "/" + fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i),
		LogDriver:     "awslogs",
		LogOptions:    map[string]string{"awslogs-group": "/ecs/" + o.Family, "awslogs-region": o.Region, "awslogs-stream": "ecs/" + name + "/" + o.TaskID},
		Networks:      []map[string]any{{"NetworkMode": "awsvpc", "IPv4Addresses": []string{"10.0.0.10"}}},
	}
}

func (s *Server) task() map[string]any {
	o := s.opts
	containers := []containerJSON{s.container(o.ContainerName, 0)}
	for i, n := range o.OtherContainers {
		containers = append(containers, s.container(n, i+1))
	}
	t := map[string]any{
		"Cluster":          "arn:aws:ecs:" + o.Region + ":" + o.Account + ":cluster/" + o.Cluster,
		"TaskARN":          s.TaskARN(),
		"Family":           o.Family,
		"Revision":         o.Revision,
		"DesiredStatus":    "RUNNING",
		"KnownStatus":      "RUNNING",
		"Limits":           map[string]float64{"CPU": 1, "Memory": 2048},
		"PullStartedAt":    "2024-01-01T00:00:00Z",
		"PullStoppedAt":    "2024-01-01T00:00:00Z",
		"AvailabilityZone": o.AZ,
		"LaunchType":       o.LaunchType,
		"Containers":       containers,
		"ClockDrift":       map[string]any{"ClockErrorBound": 0.5, "ReferenceTimestamp": "2024-01-01T00:00:00Z", "ClockSynchronizationStatus": "SYNCHRONIZED"},
		"EphemeralStorageMetrics": map[string]int{
			"Utilized": 100, "Reserved": 20496,
		},
	}
	if o.ServiceName != "" {
		t["ServiceName"] = o.ServiceName
	}
	return t
}

func (s *Server) protectionErrorJSON(code, message string) string {
	b, _ := json.Marshal(map[string]any{
		"requestID": "ecstest-request",
		"error":     map[string]string{"Arn": s.TaskARN(), "Code": code, "Message": message},
	})
	return string(b)
}

// protection mirrors the ECS agent's handler: PUT takes {"ProtectionEnabled": bool,
// "ExpiresInMinutes": n} (ProtectionEnabled required, unknown fields rejected, 1..2880), GET
// reports the state. Failures and errors come back in their documented JSON shapes.
func (s *Server) protection(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.protErr != nil {
		writeRaw(w, http.StatusBadRequest, s.protectionErrorJSON(s.protErr.Code, s.protErr.Message))
		return
	}
	if s.opts.Standalone {
		writeJSON(w, http.StatusOK, map[string]any{
			"failure": map[string]any{"Arn": s.TaskARN(), "Detail": nil, "Reason": "TASK_NOT_VALID"},
		})
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut:
		var req struct {
			ProtectionEnabled *bool `json:"ProtectionEnabled"`
			ExpiresInMinutes  *int  `json:"ExpiresInMinutes"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeRaw(w, http.StatusBadRequest, s.protectionErrorJSON("InvalidParameterException", "Invalid request: "+err.Error()))
			return
		}
		if req.ProtectionEnabled == nil {
			writeRaw(w, http.StatusBadRequest, s.protectionErrorJSON("InvalidParameterException", "Invalid request: does not contain 'ProtectionEnabled' field"))
			return
		}
		minutes := 0
		if req.ExpiresInMinutes != nil {
			minutes = *req.ExpiresInMinutes
			if minutes < 1 || minutes > 2880 {
				writeRaw(w, http.StatusBadRequest, s.protectionErrorJSON("InvalidParameterException", "expiresInMinutes must be between 1 and 2880"))
				return
			}
		}
		now := s.opts.Now()
		s.protected = *req.ProtectionEnabled
		s.expiration = time.Time{}
		if s.protected {
			d := minutes
			if d == 0 {
				d = 120
			}
			s.expiration = now.Add(time.Duration(d) * time.Minute)
		}
		s.changes = append(s.changes, ProtectionChange{Time: now, Enabled: s.protected, ExpiresInMinutes: minutes, ExpirationDate: s.expiration})
	default:
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var exp any
	if s.protectedLocked() {
		exp = s.expiration.UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"protection": map[string]any{"ExpirationDate": exp, "ProtectionEnabled": s.protected, "TaskArn": s.TaskARN()},
	})
}

// creds serves the container credentials endpoint like ECS: the raw token (no scheme) in the
// Authorization header when AWS_CONTAINER_AUTHORIZATION_TOKEN is in use.
func (s *Server) creds(w http.ResponseWriter, r *http.Request) {
	if !s.opts.NoAuthToken && r.Header.Get("Authorization") != s.opts.AuthToken {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "AccessDeniedException", "message": "ecstest: missing or wrong Authorization header"})
		return
	}
	s.mu.Lock()
	s.credentials++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{
		"AccessKeyId":     s.opts.AccessKeyID,
		"SecretAccessKey": s.opts.SecretAccessKey,
		"Token":           s.opts.SessionToken,
		"Expiration":      s.opts.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		"RoleArn":         s.opts.RoleArn,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, buf.String())
}

func writeRaw(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

package ecstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// The endpoints: routing, task metadata v4 and container credentials.

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

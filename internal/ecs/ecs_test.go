package ecs_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs"
	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs/ecstest"
)

func newFake(t *testing.T, opts ecstest.Options) (*ecstest.Server, func(string) string) {
	t.Helper()
	s := ecstest.New(opts)
	t.Cleanup(s.Close)
	env := s.Env()
	return s, func(k string) string { return env[k] }
}

func TestFromEnvAbsent(t *testing.T) {
	none := func(string) string { return "" }
	if c, ok := ecs.FromEnv(none); ok || c != nil {
		t.Error("FromEnv without ECS_CONTAINER_METADATA_URI_V4 reported ECS")
	}
	if p, ok := ecs.ProtectionFromEnv(none); ok || p != nil {
		t.Error("ProtectionFromEnv without ECS_AGENT_URI reported a client")
	}
}

func TestMetadata(t *testing.T) {
	s, getenv := newFake(t, ecstest.Options{
		Cluster: "ci", TaskID: "f00dfeedf00dfeedf00dfeedf00dfeed", ContainerName: "azp-agent",
		OtherContainers: []string{"dind"}, Family: "agents", Revision: "12",
	})
	c, ok := ecs.FromEnv(getenv)
	if !ok {
		t.Fatal("FromEnv: not on ECS")
	}
	ctx := context.Background()
	task, err := c.Task(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if task.TaskARN != "arn:aws:ecs:eu-west-1:123456789012:task/ci/f00dfeedf00dfeedf00dfeedf00dfeed" {
		t.Errorf("TaskARN = %q", task.TaskARN)
	}
	if task.ID() != "f00dfeedf00dfeedf00dfeedf00dfeed" || task.Family != "agents" || task.Revision != "12" ||
		task.LaunchType != "FARGATE" || task.AvailabilityZone != "eu-west-1a" ||
		!strings.HasSuffix(task.Cluster, ":cluster/ci") || task.ServiceName != "azp-agents" {
		t.Errorf("task = %+v", task)
	}
	if len(task.Containers) != 2 || task.Containers[0].Name != "azp-agent" || task.Containers[1].Name != "dind" ||
		!strings.HasPrefix(task.Containers[0].ImageID, "sha256:") {
		t.Errorf("containers = %+v", task.Containers)
	}
	ct, err := c.Container(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ct.Name != "azp-agent" || ct.DockerID == "" || ct.DockerName != "azp-agent" {
		t.Errorf("container = %+v", ct)
	}
	if got, want := ecs.AgentName("ecs-", task.ID(), ct.Name), "ecs-f00dfeedf00dfeedf00dfeedf00dfeed-azp-agent"; got != want {
		t.Errorf("AgentName = %q, want %q", got, want)
	}
	if s.TaskARN() != task.TaskARN {
		t.Errorf("fake TaskARN %q != %q", s.TaskARN(), task.TaskARN)
	}
}

func TestMetadataRetriesTransientFailures(t *testing.T) {
	s, getenv := newFake(t, ecstest.Options{})
	c, _ := ecs.FromEnv(getenv)
	c.Backoff = time.Millisecond
	s.Fail(ecstest.RouteTask, ecstest.Fault{Status: 503}, ecstest.Fault{Drop: true})
	if _, err := c.Task(context.Background()); err != nil {
		t.Fatalf("Task after two transient failures: %v", err)
	}
	if n := countRoute(s, ecstest.RouteTask); n != 3 {
		t.Errorf("task requests = %d, want 3", n)
	}

	// Not transient: one request, an error naming the URL.
	s.Fail(ecstest.RouteContainer, ecstest.Fault{Status: 404, Body: "not found"})
	_, err := c.Container(context.Background())
	if err == nil || !strings.Contains(err.Error(), s.MetadataURI) || !strings.Contains(err.Error(), "404") {
		t.Errorf("Container = %v", err)
	}
	if n := countRoute(s, ecstest.RouteContainer); n != 1 {
		t.Errorf("container requests = %d, want 1", n)
	}

	// Retries give up after Attempts.
	s.FailN(ecstest.RouteTask, 5, ecstest.Fault{Status: 500})
	if _, err := c.Task(context.Background()); err == nil {
		t.Error("Task succeeded through 5 failures")
	}
}

func countRoute(s *ecstest.Server, r ecstest.Route) int {
	n := 0
	for _, req := range s.Requests() {
		if req.Route == r {
			n++
		}
	}
	return n
}

func TestTaskID(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:ecs:eu-west-1:123456789012:task/cluster/0123456789abcdef": "0123456789abcdef",
		"arn:aws:ecs:us-east-1:123456789012:task/0123456789abcdef":         "0123456789abcdef",
		"0123456789abcdef": "0123456789abcdef",
		"":                 "",
	} {
		if got := ecs.TaskID(arn); got != want {
			t.Errorf("TaskID(%q) = %q, want %q", arn, got, want)
		}
	}
}

func TestAgentName(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef" // 32, like real task IDs
	long := strings.Repeat("c", 60)
	tests := []struct {
		name, prefix, id, container, want string
	}{
		{"fits", "ecs-", id, "agent", "ecs-" + id + "-agent"},
		{"no prefix", "", id, "agent", id + "-agent"},
		{"exactly 64", "p", id, strings.Repeat("c", 30), "p" + id + "-" + strings.Repeat("c", 30)},
		{"long container cut first", "ecs-", id, long, "ecs-" + id + "-" + strings.Repeat("c", 27)},
		{"cut leaves no trailing dash", "ecs-", id, "agent-container-name-that--tail", "ecs-" + id + "-agent-container-name-that"},
		{"container gone when the prefix fills the rest", strings.Repeat("p", 31), id, "agent", strings.Repeat("p", 31) + id},
		{"one char of container fits", strings.Repeat("p", 30), id, "agent", strings.Repeat("p", 30) + id + "-a"},
		{"long prefix cut after the container", strings.Repeat("p", 40), id, "agent", strings.Repeat("p", 32) + id},
		{"both long", strings.Repeat("p", 50), id, long, strings.Repeat("p", 32) + id},
		{"container only dashes", "x-", id, "--", "x-" + id},
		{"empty container", "ecs-", id, "", "ecs-" + id},
		{"container ends with dash", "", id, "agent-", id + "-agent"},
		{"multibyte prefix counted in characters", strings.Repeat("é", 40), id, "a", strings.Repeat("é", 32) + id},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ecs.AgentName(tt.prefix, tt.id, tt.container)
			if got != tt.want {
				t.Errorf("AgentName(%q, %q, %q)\n got %q (%d)\nwant %q", tt.prefix, tt.id, tt.container, got, len([]rune(got)), tt.want)
			}
			if n := len([]rune(got)); n > ecs.MaxAgentName {
				t.Errorf("length %d > %d", n, ecs.MaxAgentName)
			}
			if !strings.Contains(got, tt.id) {
				t.Errorf("%q lost the task id", got)
			}
			if strings.HasSuffix(got, "-") {
				t.Errorf("%q ends in '-'", got)
			}
		})
	}
}

func TestProtectionOnDuringJobOffAfter(t *testing.T) {
	s, getenv := newFake(t, ecstest.Options{})
	p, ok := ecs.ProtectionFromEnv(getenv)
	if !ok {
		t.Fatal("ProtectionFromEnv: no ECS_AGENT_URI")
	}
	ctx := context.Background()
	if err := p.Set(ctx, true, 60); err != nil {
		t.Fatal(err)
	}
	st, err := p.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Enabled || st.TaskARN != s.TaskARN() || time.Until(st.ExpirationDate) < 55*time.Minute {
		t.Errorf("state while on = %+v", st)
	}
	if !s.Protected() {
		t.Error("fake not protected")
	}
	if err := p.Set(ctx, false, 60); err != nil {
		t.Fatal(err)
	}
	st, err = p.State(ctx)
	if err != nil || st.Enabled || !st.ExpirationDate.IsZero() {
		t.Errorf("state after off = %+v, %v", st, err)
	}
	ch := s.ProtectionChanges()
	if len(ch) != 2 || !ch[0].Enabled || ch[0].ExpiresInMinutes != 60 || ch[1].Enabled || ch[1].ExpiresInMinutes != 0 ||
		ch[1].Time.Before(ch[0].Time) {
		t.Errorf("changes = %+v", ch)
	}
}

func TestProtectionMinutes(t *testing.T) {
	s, getenv := newFake(t, ecstest.Options{})
	p, _ := ecs.ProtectionFromEnv(getenv)
	ctx := context.Background()
	for _, m := range []int{0, -5, 5000, 1} {
		if err := p.Set(ctx, true, m); err != nil {
			t.Fatalf("Set(true, %d): %v", m, err)
		}
	}
	var got []int
	for _, c := range s.ProtectionChanges() {
		got = append(got, c.ExpiresInMinutes)
	}
	// 0 and negative omit the field (ECS default 120), above the maximum is clamped.
	if want := []int{0, 0, ecs.MaxProtectionMinutes, 1}; !equal(got, want) {
		t.Errorf("requested minutes = %v, want %v", got, want)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProtectionExpires(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, getenv := newFake(t, ecstest.Options{Now: clock})
	p, _ := ecs.ProtectionFromEnv(getenv)
	if err := p.Set(context.Background(), true, 10); err != nil {
		t.Fatal(err)
	}
	st, _ := p.State(context.Background())
	if !st.Enabled || !st.ExpirationDate.Equal(now.Add(10*time.Minute)) {
		t.Errorf("state = %+v", st)
	}
	mu.Lock()
	now = now.Add(11 * time.Minute)
	mu.Unlock()
	if st, _ := p.State(context.Background()); st.Enabled || s.Protected() {
		t.Errorf("still protected after expiry: %+v", st)
	}
}

func TestProtectionStandaloneTask(t *testing.T) {
	s, getenv := newFake(t, ecstest.Options{Standalone: true})
	p, _ := ecs.ProtectionFromEnv(getenv)
	p.Backoff = time.Millisecond
	err := p.Set(context.Background(), true, 60)
	if !errors.Is(err, ecs.ErrTaskNotValid) {
		t.Fatalf("Set on a standalone task = %v, want ErrTaskNotValid", err)
	}
	var pe *ecs.ProtectionError
	if !errors.As(err, &pe) || pe.Reason != "TASK_NOT_VALID" || pe.Arn != s.TaskARN() {
		t.Errorf("error = %#v", err)
	}
	if !strings.Contains(err.Error(), "standalone") {
		t.Errorf("error %q does not explain", err)
	}
	if n := countRoute(s, ecstest.RouteProtection); n != 1 {
		t.Errorf("requests = %d, want 1 (TASK_NOT_VALID is not retried)", n)
	}
	if len(s.ProtectionChanges()) != 0 {
		t.Error("a standalone task recorded a change")
	}
}

func TestProtectionAccessDenied(t *testing.T) {
	s, getenv := newFake(t, ecstest.Options{})
	p, _ := ecs.ProtectionFromEnv(getenv)
	p.Backoff = time.Millisecond
	s.SetProtectionError("AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/x is not authorized to perform: ecs:UpdateTaskProtection")
	err := p.Set(context.Background(), true, 60)
	var pe *ecs.ProtectionError
	if !errors.As(err, &pe) || pe.Code != "AccessDeniedException" || errors.Is(err, ecs.ErrTaskNotValid) {
		t.Fatalf("Set = %#v", err)
	}
	if !strings.Contains(err.Error(), "ecs:UpdateTaskProtection") || !strings.Contains(err.Error(), "AZP_ECS_TASK_PROTECTION") {
		t.Errorf("error %q does not say what to do", err)
	}
	if n := countRoute(s, ecstest.RouteProtection); n != 1 {
		t.Errorf("requests = %d, want 1 (access denied is not retried)", n)
	}
	s.SetProtectionError("", "")
	if err := p.Set(context.Background(), true, 60); err != nil {
		t.Errorf("after clearing the error: %v", err)
	}
}

func TestProtectionRetriesTransient(t *testing.T) {
	s, getenv := newFake(t, ecstest.Options{})
	p, _ := ecs.ProtectionFromEnv(getenv)
	p.Backoff = time.Millisecond
	s.Fail(ecstest.RouteProtection,
		ecstest.Fault{Status: 400, Body: `{"requestID":"r","error":{"Arn":"a","Code":"ThrottlingException","Message":"Rate exceeded"}}`},
		ecstest.Fault{Status: 500, Body: `{"error":{"Arn":"a","Code":"RequestCanceled","Message":"Timed out calling Amazon ECS Task Protection API"}}`},
	)
	if err := p.Set(context.Background(), true, 30); err != nil {
		t.Fatalf("Set after transient errors: %v", err)
	}
	if n := countRoute(s, ecstest.RouteProtection); n != 3 {
		t.Errorf("requests = %d, want 3", n)
	}
	s.Fail(ecstest.RouteProtection, ecstest.Fault{Drop: true})
	if err := p.Set(context.Background(), false, 0); err != nil {
		t.Fatalf("Set after a dropped connection: %v", err)
	}
	if s.Protected() {
		t.Error("still protected")
	}
	// Unexpected non-JSON 502s are retried and then reported with the status.
	s.FailN(ecstest.RouteProtection, 3, ecstest.Fault{Status: http.StatusBadGateway, Body: "bad gateway"})
	err := p.Set(context.Background(), true, 30)
	var pe *ecs.ProtectionError
	if !errors.As(err, &pe) || pe.Status != http.StatusBadGateway {
		t.Errorf("Set through 502s = %v", err)
	}
}

func TestProtectionRespectsContext(t *testing.T) {
	s, getenv := newFake(t, ecstest.Options{})
	p, _ := ecs.ProtectionFromEnv(getenv)
	s.Fail(ecstest.RouteProtection, ecstest.Fault{Delay: 5 * time.Second, Status: 500})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Set(ctx, true, 30)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("Set = %v after %v", err, time.Since(start))
	}
}

package prune_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/prune"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

const token = "prune-pat-0123456789"

func setup(t *testing.T) (*sim.Server, *azdo.Client, int) {
	t.Helper()
	s := sim.New(sim.Options{Tokens: map[string]string{token: sim.ScopeManage}})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := azdo.New(context.Background(), azdo.Options{URL: s.OrgURL(), HTTPClient: s.HTTPClient(),
		Auth: func(context.Context) (string, error) { return secrets.BasicAuth(token), nil }})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Pool(context.Background(), "Default")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	seed := func(n int, status string, ago time.Duration, prefix string) {
		if err := s.SeedAgents("Default", n, status, now.Add(-ago), prefix); err != nil {
			t.Fatal(err)
		}
	}
	seed(3, "online", 5*time.Hour, "ci-on-")
	seed(4, "offline", 10*time.Minute, "ci-recent-")
	seed(5, "offline", 3*time.Hour, "ci-old-")
	seed(2, "offline", 3*time.Hour, "other-")
	return s, c, p.ID
}

func names(s *sim.Server) map[string]bool {
	out := map[string]bool{}
	for _, a := range s.Agents("Default") {
		out[a.Name] = true
	}
	return out
}

func TestPrunePrefix(t *testing.T) {
	s, c, pool := setup(t)
	var out bytes.Buffer

	sum, err := prune.Run(context.Background(), c, pool, prune.Options{Prefix: "CI-", DryRun: true, Out: &out})
	if err != nil || sum.Matched != 5 || len(names(s)) != 14 {
		t.Fatalf("dry run: %+v %v", sum, err)
	}
	if !strings.Contains(out.String(), "would delete ci-old-0") || strings.Contains(out.String(), "ci-recent") {
		t.Fatalf("dry-run output:\n%s", out.String())
	}

	out.Reset()
	sum, err = prune.Run(context.Background(), c, pool, prune.Options{Prefix: "ci-", Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	want := prune.Summary{Matched: 5, Deleted: 5, SkippedOnline: 3, SkippedRecent: 4, SkippedOtherNames: 2}
	if sum != want {
		t.Fatalf("summary %+v, want %+v", sum, want)
	}
	if got := strings.TrimSpace(out.String()); got != "prune: deleted 5, failed 0, skipped 3 online, 4 recently offline, 2 other names" {
		t.Fatalf("summary line %q", got)
	}
	left := names(s)
	for n := range left {
		if strings.HasPrefix(n, "ci-old-") {
			t.Fatalf("%s not deleted", n)
		}
	}
	if len(left) != 9 || !left["ci-on-0"] || !left["ci-recent-3"] || !left["other-1"] {
		t.Fatalf("wrong agents left: %v", left)
	}

	// A shorter --offline-for takes the recent ones too, still not the online ones.
	sum, err = prune.Run(context.Background(), c, pool, prune.Options{Prefix: "ci-", OfflineFor: 5 * time.Minute})
	if err != nil || sum.Deleted != 4 || sum.SkippedOnline != 3 {
		t.Fatalf("%+v %v", sum, err)
	}
}

func TestPruneAllOffline(t *testing.T) {
	s, c, pool := setup(t)
	sum, err := prune.Run(context.Background(), c, pool, prune.Options{AllOffline: true, Prefix: "ignored-"})
	if err != nil || sum.Deleted != 7 || sum.SkippedOnline != 3 || sum.SkippedRecent != 4 || sum.SkippedOtherNames != 0 {
		t.Fatalf("%+v %v", sum, err)
	}
	if left := names(s); len(left) != 7 || left["other-0"] {
		t.Fatalf("left %v", left)
	}
}

func TestPruneNeedsPrefix(t *testing.T) {
	_, err := prune.Run(context.Background(), nil, 1, prune.Options{Prefix: "  "})
	if exit.Code(err) != exit.Usage || !strings.Contains(err.Error(), "--prefix") {
		t.Fatalf("%v", err)
	}
}

func TestPruneFailuresAreReported(t *testing.T) {
	s, c, pool := setup(t)
	s.Fault(sim.FaultSpec{Method: "DELETE", PathRegexp: "/agents/", Status: 400, Body: sim.AgentInUseBody("ci-old-x"), Count: 2})
	sum, err := prune.Run(context.Background(), c, pool, prune.Options{Prefix: "ci-", Concurrency: 1})
	if exit.Code(err) != exit.Failure || sum.Failed != 2 || sum.Deleted != 3 || !strings.Contains(err.Error(), "ci-old-0") {
		t.Fatalf("%+v %v", sum, err)
	}
}

// A rate-limited server: every deletion eventually succeeds, at the pace Retry-After sets.
func TestPruneRateLimited(t *testing.T) {
	s := sim.New(sim.Options{Tokens: map[string]string{token: sim.ScopeManage}})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, _ := azdo.New(context.Background(), azdo.Options{URL: s.OrgURL(), HTTPClient: s.HTTPClient(),
		Auth: func(context.Context) (string, error) { return secrets.BasicAuth(token), nil }})
	p, _ := c.Pool(context.Background(), "Default")
	s.SeedAgents("Default", 300, "offline", time.Now().Add(-2*time.Hour), "bench-")
	s.SeedAgents("Default", 30, "online", time.Now().Add(-2*time.Hour), "bench-live-")
	s.RateLimit(sim.RateLimitSpec{Method: "DELETE", N: 120, Window: time.Second})
	s.ResetRequestLog()
	start := time.Now()
	sum, err := prune.Run(context.Background(), c, p.ID, prune.Options{Prefix: "bench-"})
	if err != nil || sum.Deleted != 300 || sum.SkippedOnline != 30 {
		t.Fatalf("%+v %v", sum, err)
	}
	limited := 0
	for _, r := range s.RequestLog() {
		if r.Status == 429 {
			limited++
		}
	}
	t.Logf("pruned 300 in %s with %d answers 429", time.Since(start), limited)
	if limited == 0 {
		t.Fatal("the rate limit never applied; the test proves nothing")
	}
	if len(s.Agents("Default")) != 30 {
		t.Fatal("online agents touched")
	}
}

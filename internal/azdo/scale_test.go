package azdo_test

import (
	"context"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

func TestScalerCalls(t *testing.T) {
	s := startSim(t, sim.Options{})
	c := client(t, s, pat(managePAT))
	ctx := context.Background()
	pool, err := c.Pool(ctx, "Default")
	if err != nil {
		t.Fatal(err)
	}
	s.SetParallelJobs(3)
	id, _ := s.QueueJob(sim.JobSpec{Demands: []string{"docker", "java -equals 17"}})
	reqs, err := c.UnfinishedRequests(ctx, pool.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || reqs[0].ID != uint64(id) || !reqs[0].Pending() || len(reqs[0].Demands) != 2 || reqs[0].Demands[1] != "java -equals 17" {
		t.Fatalf("requests %+v", reqs)
	}
	p, err := c.ParallelJobs(ctx)
	if err != nil || p.Total != 3 || p.Used != 0 {
		t.Fatalf("parallel jobs %+v %v", p, err)
	}
	if err := c.AddOfflineAgent(ctx, pool.ID, "scale-placeholder", "4.261.0", map[string]string{"docker": "true"}); err != nil {
		t.Fatal(err)
	}
	a, err := c.Agent(ctx, pool.ID, "scale-placeholder")
	if err != nil || a == nil || a.Online() || a.Version != "4.261.0" {
		t.Fatalf("placeholder %+v %v", a, err)
	}
}

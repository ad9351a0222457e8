package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/scale"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/ecssim"
)

// A burst of N matching jobs gets N tasks and all succeed; a job this profile cannot serve
// launches nothing; AZP_SCALE_MAX and the parallel-job limit hold at every instant (checked at
// every task status change by the local ECS's bookkeeping); then zero tasks, zero agents but the
// placeholder.
func TestScaleBurstWithinMaxAndParallelJobs(t *testing.T) {
	se := newScaleEnv(t, scaleOpts{max: 3, parallel: 2, caps: "docker,java=17"})
	sc := se.startScaler()
	var ids []int64
	demands := [][]string{{"docker"}, {"java -equals 17"}, {"Agent.OS -equals linux", "docker"}, nil}
	for i, d := range demands {
		ids = append(ids, se.queue(sim.JobSpec{Name: "burst-" + string(rune('a'+i)), Duration: time.Second, Demands: d}))
	}
	unmatched := se.queue(sim.JobSpec{Name: "needs-maven", Demands: []string{"maven"}})
	for _, id := range ids {
		se.waitRequest(id, 90*time.Second, finished)
		se.wantResult(id, "succeeded")
	}
	se.waitQuiet(60 * time.Second)
	if got := len(se.ourTasks()); got != len(ids) {
		t.Fatalf("%d tasks launched for %d matching jobs:%s", got, len(ids), summary(se.ourTasks()))
	}
	if req, _ := se.sim.Request(unmatched); !req.AssignTime.IsZero() || req.Result != "" {
		t.Fatalf("the unmatched job was served: %+v", req)
	}
	if m := se.ecs.MaxActive("azp-scale"); m > 3 {
		t.Fatalf("%d tasks at once, AZP_SCALE_MAX 3", m)
	}
	se.assertNoViolations()
	// The tasks were launched as the contract says.
	for _, tk := range se.ourTasks() {
		if tk.Env["AZP_ONCE"] != "true" || tk.Env["AZP_AGENT_NAME_PREFIX"] != scalePrefix || tk.Env["AZP_ECS_TASK_PROTECTION"] != "false" ||
			tk.Env["docker"] != "true" || tk.Env["java"] != "17" || tk.Env["AZP_IDLE_TIMEOUT"] != "20s" ||
			tk.Tags[scale.TagScaler] != "Default/azp-agent" || tk.Tags[scale.TagRequest] == "" || tk.StopCode != "EssentialContainerExited" || *tk.ExitCode != 0 {
			t.Fatalf("task %+v", tk)
		}
	}
	if n := sc.metric("TasksLaunched"); n != float64(len(ids)) {
		t.Fatalf("TasksLaunched metric %v", n)
	}
	// SIGTERM: exit 0 within 5 s.
	if took, code := sc.stop(); code != 0 || took > 5*time.Second {
		t.Fatalf("scaler exit %d after %s", code, took)
	}
}

// A scaler restarted mid-burst launches nothing twice: it rebuilds its view from ECS and the server.
func TestScaleRestartLaunchesNothingTwice(t *testing.T) {
	se := newScaleEnv(t, scaleOpts{pending: 3 * time.Second})
	sc := se.startScaler()
	var ids []int64
	for range 3 {
		ids = append(ids, se.queue(sim.JobSpec{Duration: time.Second}))
	}
	se.waitTasks("3 tasks launched", 30*time.Second, func(ts []ecssim.TaskView) bool { return len(ts) == 3 })
	sc.kill() // mid-burst: the tasks are still pulling their image
	sc2 := se.startScaler()
	for _, id := range ids {
		se.waitRequest(id, 90*time.Second, finished)
		se.wantResult(id, "succeeded")
	}
	if n := len(se.ourTasks()); n != 3 {
		t.Fatalf("%d tasks for 3 jobs across a restart:%s", n, summary(se.ourTasks()))
	}
	// Agent tasks are not stopped by the scaler's own stop.
	busy := se.queue(sim.JobSpec{Duration: 30 * time.Second})
	se.waitRequest(busy, 60*time.Second, running)
	if took, code := sc2.stop(); code != 0 || took > 5*time.Second {
		t.Fatalf("scaler exit %d after %s", code, took)
	}
	ts := se.ourTasks()
	if countActive(ts) == 0 {
		t.Fatalf("no task left running:%s", summary(ts))
	}
	for _, tk := range ts {
		if tk.StopCode == "UserInitiated" {
			t.Fatalf("the scaler stopped a task:%s", summary(ts))
		}
	}
	se.assertNoViolations()
}

// Persistent mode scales idle surplus in, and never stops a busy agent: a job assigned while the
// scaler disables the agent keeps the agent (it is enabled again), and the job succeeds.
func TestScalePersistentScaleInNeverStopsABusyAgent(t *testing.T) {
	se := newScaleEnv(t, scaleOpts{mode: "persistent"})
	first := se.queue(sim.JobSpec{Duration: time.Second})
	// The first scale-in's disable is slow, so that a job can be assigned meanwhile.
	if _, err := se.sim.Fault(sim.FaultSpec{Method: "PATCH", PathRegexp: `/agents/\d+$`, Delay: 3 * time.Second, Count: 1}); err != nil {
		t.Fatal(err)
	}
	se.sim.ResetRequestLog()
	sc := se.startScaler()
	se.waitRequest(first, 60*time.Second, finished)
	// Wait for the scaler's disable to be in flight, then queue a job: the idle agent takes it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		inflight := false
		for _, r := range se.sim.RequestLog() {
			if r.Method == "PATCH" && strings.Contains(r.Path, "/agents/") && r.Status == 0 {
				inflight = true
			}
		}
		if inflight {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the scaler never tried to scale the idle agent in")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The job outlasts the slow disable, so the scaler's re-read finds it assigned.
	second := se.queue(sim.JobSpec{Duration: 6 * time.Second})
	se.waitRequest(second, 30*time.Second, finished)
	se.wantResult(second, "succeeded")
	sc.waitLog("scale-in cancelled", 10*time.Second)
	// Then the agent is idle again and is scaled in for real; its entrypoint deregisters it.
	se.waitQuiet(60 * time.Second)
	tasks := se.ourTasks()
	if len(tasks) != 1 || tasks[0].StoppedReason != scale.ReasonScaleIn || *tasks[0].ExitCode != 0 {
		t.Fatalf("tasks:%s", summary(tasks))
	}
	if r, _ := se.sim.Request(second); r.AgentName != agentName(tasks[0].ID) {
		t.Fatalf("the second job ran on %q", r.AgentName)
	}
	se.assertNoViolations()
}

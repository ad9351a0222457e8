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

// Tasks that die at boot trip the breaker: after AZP_SCALE_MAX_FAILED_LAUNCHES failed launches in
// a row launching pauses for one boot timeout (logged, in the metrics), then resumes.
func TestScaleBootDeathsTripTheBreaker(t *testing.T) {
	se := newScaleEnv(t, scaleOpts{maxFailed: "2", bootTimeout: "6s"})
	se.ecs.FailBoot(2, map[string]string{"AZP_POOL": "NoSuchPool"}) // the real entrypoint exits 2
	sc := se.startScaler()
	id := se.queue(sim.JobSpec{Duration: time.Second})
	sc.waitLog("launching paused", 60*time.Second)
	ts := se.ourTasks()
	if len(ts) != 2 || ts[0].ExitCode == nil || *ts[0].ExitCode != 2 || ts[1].ExitCode == nil || *ts[1].ExitCode != 2 {
		t.Fatalf("tasks before the pause:%s", summary(ts))
	}
	se.waitRequest(id, 90*time.Second, finished)
	se.wantResult(id, "succeeded")
	ts = se.ourTasks()
	if len(ts) != 3 {
		t.Fatalf("tasks:%s", summary(ts))
	}
	// The third launch waited for the pause: one boot timeout after the second failure.
	if gap := ts[2].CreatedAt.Sub(ts[1].StoppedAt); gap < 5*time.Second {
		t.Fatalf("relaunched %s after the second failure, within the pause", gap)
	}
	if sc.metric("LaunchingPaused") < 1 || sc.metric("FailedLaunches") < 2 {
		t.Fatalf("metrics: paused %v failed %v", sc.metric("LaunchingPaused"), sc.metric("FailedLaunches"))
	}
	se.assertNoViolations()
}

// What leaks is cleaned up: a SIGKILLed task's agent (a ghost) is deleted, and a task whose agent
// never registers is stopped after the boot timeout; the placeholder stays.
func TestScaleCleansUpGhostsAndNeverRegisteredTasks(t *testing.T) {
	se := newScaleEnv(t, scaleOpts{mode: "persistent", standby: "1", bootTimeout: "5s"})
	sc := se.startScaler()
	first := se.waitTasks("a standby task", 30*time.Second, func(ts []ecssim.TaskView) bool { return len(ts) == 1 })[0]
	in := &instance{h: se.harness, name: agentName(first.ID)}
	in.waitOnline(60 * time.Second)
	// The next task cannot reach the server, so its agent never registers.
	se.ecs.FailBoot(1, map[string]string{"AZP_URL": "http://127.0.0.1:9/sim"})
	if err := se.ecs.KillTask(first.ID); err != nil {
		t.Fatal(err)
	}
	in.waitGone(60 * time.Second) // the ghost: offline, task gone, deleted by the scaler
	ts := se.waitTasks("the never-registered task stopped, a good one running", 90*time.Second, func(ts []ecssim.TaskView) bool {
		return len(ts) >= 3 && ts[1].LastStatus == ecssim.StatusStopped && countActive(ts) == 1
	})
	if ts[0].ExitCode == nil || *ts[0].ExitCode != 137 || ts[1].StoppedReason != scale.ReasonBootTimeout {
		t.Fatalf("tasks:%s", summary(ts))
	}
	(&instance{h: se.harness, name: agentName(ts[2].ID)}).waitOnline(60 * time.Second)
	if _, ok := se.sim.Agent("Default", scalePrefix+"placeholder"); !ok {
		t.Fatal("the placeholder is gone")
	}
	if len(sc.logs("deleted ghost agent")) != 1 || sc.metric("AgentsPruned") < 1 {
		t.Fatalf("ghost deletion not logged or counted")
	}
	se.assertNoViolations()
}

// 429s are honoured: with the job-request listing rate-limited, the scaler waits out each
// Retry-After instead of hammering, counts the throttling, and still serves the job. ECS
// throttling is retried too.
func TestScaleHonours429(t *testing.T) {
	se := newScaleEnv(t, scaleOpts{})
	window := 3 * time.Second
	if err := se.sim.RateLimit(sim.RateLimitSpec{Method: "GET", PathRegexp: `/jobrequests$`, N: 1, Window: window}); err != nil {
		t.Fatal(err)
	}
	se.ecs.Throttle(2)
	se.sim.ResetRequestLog()
	start := time.Now()
	sc := se.startScaler()
	id := se.queue(sim.JobSpec{Duration: time.Second})
	se.waitRequest(id, 90*time.Second, finished)
	se.wantResult(id, "succeeded")
	elapsed := time.Since(start)
	limited := 0
	for _, r := range se.sim.RequestLog() {
		if r.Method == "GET" && strings.HasSuffix(r.Path, "/jobrequests") && r.Status == 429 {
			limited++
		}
	}
	// One 429 per window at most (plus one for a window boundary): a client that ignored
	// Retry-After would poll every 300 ms and collect about ten per window.
	if windows := int(elapsed/window) + 2; limited > windows {
		t.Fatalf("%d answers 429 in %s (%d windows): Retry-After not honoured", limited, elapsed, windows)
	}
	if limited == 0 {
		t.Fatal("the rate limit never applied")
	}
	sc.stop()
	if sc.metric("ThrottledRequests") < 1 {
		t.Fatalf("ThrottledRequests %v", sc.metric("ThrottledRequests"))
	}
}

// Standby follows its schedule: an entry covering now keeps that many idle agents ready, and a
// job taken by one of them is replaced.
func TestScaleStandbySchedule(t *testing.T) {
	day := strings.ToLower(time.Now().UTC().Weekday().String()[:3])
	se := newScaleEnv(t, scaleOpts{standby: day + " 00:00-24:00=2"})
	se.env["AZP_SCALE_TIMEZONE"] = "UTC"
	se.startScaler()
	idle := func(n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			got := 0
			for _, a := range se.sim.Agents("Default") {
				if a.Status == "online" && a.AssignedRequestID == 0 && strings.HasPrefix(a.Name, scalePrefix) {
					got++
				}
			}
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d idle agents, want %d: %+v", got, n, se.sim.Agents("Default"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	idle(2)
	id := se.queue(sim.JobSpec{Duration: time.Second})
	rv := se.waitRequest(id, 30*time.Second, finished)
	(&instance{h: se.harness, name: rv.AgentName}).waitGone(30 * time.Second) // a once agent leaves after its job
	idle(2)
	if n := len(se.ourTasks()); n != 3 {
		t.Fatalf("%d tasks for 2 standby and 1 job:%s", n, summary(se.ourTasks()))
	}
	se.assertNoViolations()
}

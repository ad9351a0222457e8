//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/ecssim"
)

// soakSpec is `make soak`: many short jobs through `azp-entrypoint scale` (once mode) while faults
// are injected at random. Durations here are wall time: the soak is about safety, not latency.
type soakSpec struct {
	Jobs, Burst, Max int
	BurstGap         time.Duration
	JobMin, JobMax   time.Duration // the fake agent's job duration (the knob)
	Seed             uint64
}

// soakFault is one injected fault and what became of it.
type soakFault struct {
	At       time.Duration
	Kind     string
	Detail   string
	Absorbed string
	killed   string // task id, for SIGKILLs
	req      int64  // the request that task ran, for SIGKILLs
}

type soakResult struct {
	spec            soakSpec
	took            time.Duration
	faults          []*soakFault
	results         map[string]int
	unexpected      []string // jobs that did not succeed and whose task was not killed under them
	unfinished      int
	ghosts, orphans []string
	maxActive       int
	overMax         []string
	launched        int
	ctlStatuses     string
	ecsCalls        map[string]int
	twice           []string // spare tasks launched just after the scaler's restart
	kinds           map[string]int
	err             error
}

func (b *bench) soak(sp soakSpec) (res soakResult) {
	began := time.Now()
	res = soakResult{spec: sp, results: map[string]int{}, kinds: map[string]int{}}
	defer func() { res.took = time.Since(began) }()
	rng := rand.New(rand.NewPCG(sp.Seed, sp.Seed^0x9e3779b97f4a7c15))

	var err error
	if b.fleetPkg, err = b.buildFleetPkg(); err != nil {
		res.err = err
		return res
	}
	// k = 10 for the scaler's and the local ECS's timings (poll 0.5 s, boot timeout 30 s, idle
	// timeout 90 s, P = 1 s); the simulator abandons a lost agent's job 5 s after it went offline.
	w := workloadSpec{K: 10, P: 10 * time.Second, Bursts: 1, PerBurst: sp.Jobs, MinDur: sp.JobMin, MaxDur: sp.JobMax, Gap: time.Hour}
	e, err := b.newFleetEnvOpts("soak", w, sim.Options{Pools: []string{fleetPool}, AbandonAfter: 5 * time.Second})
	if err != nil {
		res.err = err
		return res
	}
	e.limit = sp.Max
	defer e.close()
	d := &scalerDriver{mode: "once", limit: sp.Max, w: w, ep: b.ep}
	if err := d.start(context.Background(), e); err != nil {
		res.err = err
		return res
	}
	defer d.stop()

	var mu sync.Mutex
	add := func(f *soakFault) {
		f.At = time.Since(began)
		mu.Lock()
		res.faults = append(res.faults, f)
		mu.Unlock()
		b.progress("soak: %s %s", f.Kind, f.Detail)
	}
	jobsRoute := `^/sim/_apis/distributedtask/pools/[0-9]+/jobrequests$`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	injectorDone := make(chan struct{})
	restarted := false
	go func() {
		defer close(injectorDone)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(3000+rng.IntN(3000)) * time.Millisecond):
			}
			switch rng.IntN(6) {
			case 0:
				n := 1 + rng.IntN(3)
				e.sim.Fault(sim.FaultSpec{PathRegexp: jobsRoute, Status: 503, Count: n})
				add(&soakFault{Kind: "server 5xx", Detail: fmt.Sprintf("the next %d job-request listings answer 503", n)})
			case 1:
				n := 1 + rng.IntN(2)
				e.sim.Fault(sim.FaultSpec{PathRegexp: jobsRoute, Status: 429, RetryAfter: time.Second, Count: n})
				add(&soakFault{Kind: "server 429", Detail: fmt.Sprintf("the next %d job-request listings answer 429, Retry-After: 1", n)})
			case 2:
				n := 1 + rng.IntN(4)
				e.ecs.FailCapacity(n)
				add(&soakFault{Kind: "RunTask capacity", Detail: fmt.Sprintf("the next %d placements come back in failures[] (%q)", n, "Capacity is unavailable")})
			case 3:
				n := 1 + rng.IntN(2)
				e.ecs.Throttle(n)
				add(&soakFault{Kind: "ECS throttling", Detail: fmt.Sprintf("the next %d ECS calls answer ThrottlingException", n)})
			case 4:
				// A task that dies at boot: its entrypoint is given a pool that does not exist.
				n := 1 + rng.IntN(2)
				e.ecs.FailBoot(n, map[string]string{"AZP_POOL": "soak-no-such-pool"})
				add(&soakFault{Kind: "task dies at boot", Detail: fmt.Sprintf("the next %d tasks start with AZP_POOL of a pool that does not exist", n)})
			case 5:
				// SIGKILL a task whose agent is running a job.
				f := b.soakKill(e, rng)
				if f != nil {
					add(f)
				}
			}
		}
	}()

	// The jobs, in bursts; the scaler is SIGKILLed and restarted once, mid-burst.
	ids := map[int64]bool{}
	for i := 0; i < sp.Jobs; i++ {
		if i > 0 && i%sp.Burst == 0 {
			time.Sleep(sp.BurstGap)
		}
		if !restarted && i == sp.Jobs/2+sp.Burst/2 {
			restarted = true
			if err := d.restart(e); err != nil {
				res.err = err
				return res
			}
			add(&soakFault{Kind: "scaler restart", Detail: "the scaler process is SIGKILLed mid-burst and started again"})
		}
		dur := sp.JobMin + time.Duration(rng.Int64N(int64(sp.JobMax-sp.JobMin)+1))
		id, err := e.sim.QueueJob(sim.JobSpec{Pool: fleetPool, Name: fmt.Sprintf("soak-%04d", i), Duration: dur, Demands: plannedJob{Docker: i%2 == 1}.demands()})
		if err != nil {
			res.err = err
			return res
		}
		ids[id] = true
	}
	b.progress("soak: %d jobs queued", sp.Jobs)

	// Faults stop once every job is queued and half of them ran; then everything must settle.
	deadline := time.Now().Add(20 * time.Minute)
	for {
		finished := 0
		for _, v := range e.sim.Requests() {
			if ids[v.ID] && !v.FinishTime.IsZero() {
				finished++
			}
		}
		if finished >= sp.Jobs*3/4 {
			cancel()
		}
		if finished == sp.Jobs || time.Now().After(deadline) {
			res.unfinished = sp.Jobs - finished
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	<-injectorDone
	e.sim.ClearFaults()
	// Settle: the last tasks leave, the scaler sweeps what leaked (mark, then sweep).
	settle := time.Now().Add(2 * time.Minute)
	for time.Now().Before(settle) {
		if e.activeTasks() == 0 && len(soakGhosts(e)) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // one more pass of the scaler
	d.stop()

	tasks := e.taskSnapshot()
	res.launched = len(tasks)
	res.ghosts = soakGhosts(e)
	for _, t := range tasks {
		if t.LastStatus != ecssim.StatusStopped {
			res.orphans = append(res.orphans, t.ID+" ("+t.LastStatus+")")
		}
	}
	e.mu.Lock()
	res.maxActive, res.overMax = e.maxActive, append([]string(nil), e.overMax...)
	e.mu.Unlock()
	res.ctlStatuses = e.ctlStatuses()
	res.ecsCalls = e.ecsCalls()
	killedReq := map[int64]*soakFault{}
	for _, f := range res.faults {
		if f.req != 0 {
			killedReq[f.req] = f
		}
	}
	reqs := e.sim.Requests()
	for _, v := range reqs {
		if !ids[v.ID] {
			continue
		}
		res.results[orDash(v.Result)]++
		if f := killedReq[v.ID]; f != nil {
			f.Absorbed = fmt.Sprintf("its job (request %d) ended %q and was not run again", v.ID, v.Result)
			if v.Result == "succeeded" {
				f.Absorbed = fmt.Sprintf("its job (request %d) had already succeeded", v.ID)
			}
			continue
		}
		if v.Result != "succeeded" {
			res.unexpected = append(res.unexpected, fmt.Sprintf("request %d %q on %q", v.ID, v.Result, v.AgentName))
		}
	}
	// What each task did: ran a job (the request's agent is named after the task), died or was
	// stopped before running one, or left idle (its job went to another agent: a spare launch).
	ran := map[string]bool{}
	for _, v := range reqs {
		for _, t := range tasks {
			if v.AgentName != "" && strings.Contains(v.AgentName, t.ID) {
				ran[t.ID] = true
			}
		}
	}
	var restartAt time.Time
	for _, f := range res.faults {
		if f.Kind == "scaler restart" {
			restartAt = began.Add(f.At)
		}
	}
	for _, t := range tasks {
		switch {
		case ran[t.ID]:
			res.kinds["ran a job"]++
		case t.Running.IsZero() || t.StopCode == "TaskFailedToStart" || (t.ExitCode != nil && *t.ExitCode != 0):
			res.kinds["died or failed before a job"]++
		case t.StopCode == "UserInitiated":
			res.kinds["stopped by the scaler before a job (boot timeout)"]++
		default:
			res.kinds["left idle (spare)"]++
			if !restartAt.IsZero() && !t.Created.Before(restartAt) && t.Created.Before(restartAt.Add(10*time.Second)) {
				res.twice = append(res.twice, "spare task "+t.ID+" launched within 10 s after the restart")
			}
		}
	}
	sort.Strings(res.twice)
	for _, f := range res.faults {
		if f.Absorbed != "" {
			continue
		}
		switch f.Kind {
		case "server 5xx", "server 429":
			f.Absorbed = "the scaler skipped deciding on that pass (a failed read freezes decisions) and read again on the next; no job was lost"
		case "RunTask capacity":
			f.Absorbed = "the requests stayed pending and were launched for on a later pass"
		case "ECS throttling":
			f.Absorbed = "the SDK's retry (or the next pass) repeated the call"
		case "task dies at boot":
			f.Absorbed = "the task stopped before its agent was online, counted as a failed launch; its request was launched for again"
		case "scaler restart":
			f.Absorbed = fmt.Sprintf("the new scaler rebuilt its view from ECS and the server; spare tasks launched within 10 s after it: %d", len(res.twice))
		case "SIGKILL mid-job":
			f.Absorbed = "see its request's result"
		}
	}
	return res
}

// soakKill SIGKILLs the container of a running task whose agent is busy.
func (b *bench) soakKill(e *fleetEnv, rng *rand.Rand) *soakFault {
	busy := map[string]int64{}
	for _, a := range e.sim.Agents(fleetPool) {
		if a.AssignedRequestID != 0 && a.Status == "online" {
			busy[a.Name] = a.AssignedRequestID
		}
	}
	var cands []soakFault
	for _, t := range e.taskSnapshot() {
		if t.LastStatus != ecssim.StatusRunning {
			continue
		}
		for name, req := range busy {
			if strings.Contains(name, t.ID) {
				cands = append(cands, soakFault{killed: t.ID, req: req})
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	c := cands[rng.IntN(len(cands))]
	if err := e.ecs.KillTask(c.killed); err != nil {
		return nil
	}
	return &soakFault{Kind: "SIGKILL mid-job", Detail: fmt.Sprintf("task %s killed while its agent ran request %d", c.killed, c.req), killed: c.killed, req: c.req}
}

// soakGhosts are the agents left in the pool (placeholder aside) whose task is stopped or unknown.
func soakGhosts(e *fleetEnv) []string {
	tasks := e.taskSnapshot()
	var out []string
	for _, a := range e.sim.Agents(fleetPool) {
		if strings.Contains(a.Name, "placeholder") {
			continue
		}
		alive := false
		for _, t := range tasks {
			if strings.Contains(a.Name, t.ID) && t.LastStatus != ecssim.StatusStopped {
				alive = true
			}
		}
		if !alive {
			out = append(out, a.Name+" ("+a.Status+")")
		}
	}
	return out
}

func (r soakResult) ok() bool {
	return r.err == nil && r.unfinished == 0 && len(r.unexpected) == 0 && len(r.ghosts) == 0 && len(r.orphans) == 0 &&
		len(r.overMax) == 0 && r.maxActive <= r.spec.Max && len(r.twice) == 0
}

func (r soakResult) markdown() string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	p("# Soak: `azp-entrypoint scale` under faults\n\n")
	p("`make soak` (`go run ./bench -soak`), taken %s, took %s. ", time.Now().UTC().Format("2006-01-02 15:04 MST"), fmtDur(r.took.Round(time.Second)))
	p("%d jobs (every second one demanding `docker`) queued in bursts of %d every %s, each running %s–%s (the fake agent's job duration), through one scaler in `once` mode with `AZP_SCALE_MAX=%d`, against the simulator and the local ECS (real `azp-entrypoint` tasks), with the scaler's and ECS's timings compressed 10× (poll 0.5 s, boot timeout 30 s, P = 1 s). Faults are injected at random every 3–6 s until three quarters of the jobs finished; seed %d.\n\n",
		r.spec.Jobs, r.spec.Burst, r.spec.BurstGap, r.spec.JobMin, r.spec.JobMax, r.spec.Max, r.spec.Seed)
	p("| Check | result | passed |\n|---|---|---|\n")
	var res []string
	for k, v := range r.results {
		res = append(res, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(res)
	p("| Every job finished | %d unfinished | %s |\n", r.unfinished, yesNo(r.unfinished == 0))
	p("| Every job succeeded except those whose task was killed under them | results: %s; unexpected: %d | %s |\n", strings.Join(res, ", "), len(r.unexpected), yesNo(len(r.unexpected) == 0))
	var kinds []string
	for k, v := range r.kinds {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(kinds)
	p("| No spare task launched just after the scaler's restart (nothing launched twice) | %d | %s |\n", len(r.twice), yesNo(len(r.twice) == 0))
	p("| What the tasks did | %s | – |\n", strings.Join(kinds, ", "))
	p("| Ghost agents at the end | %d | %s |\n", len(r.ghosts), yesNo(len(r.ghosts) == 0))
	p("| Orphan tasks at the end (not STOPPED) | %d | %s |\n", len(r.orphans), yesNo(len(r.orphans) == 0))
	p("| Highest concurrent tasks / max, checked at every status change | %d / %d, exceeded %d times | %s |\n", r.maxActive, r.spec.Max, len(r.overMax), yesNo(len(r.overMax) == 0 && r.maxActive <= r.spec.Max))
	p("| Tasks launched | %d for %d jobs | – |\n", r.launched, r.spec.Jobs)
	p("| Scaler's requests to the server by status | %s | – |\n", orDash(r.ctlStatuses))
	p("| ECS calls served | %s | – |\n\n", fmtCalls(r.ecsCalls))
	if r.err != nil {
		p("**Error:** %v\n\n", r.err)
	}
	p("**Verdict: %s**\n\n", map[bool]string{true: "passed", false: "FAILED"}[r.ok()])
	for _, l := range [][2]any{{"Unexpected job results", r.unexpected}, {"Ghosts", r.ghosts}, {"Orphans", r.orphans}, {"Max exceeded at", r.overMax}, {"Spare tasks after the restart", r.twice}} {
		if s := l[1].([]string); len(s) > 0 {
			p("- %s: %s\n", l[0], strings.Join(s[:min(20, len(s))], "; "))
		}
	}
	p("\n## Faults injected (%d)\n\n| # | at | fault | detail | how it was absorbed |\n|---|---|---|---|---|\n", len(r.faults))
	for i, f := range r.faults {
		p("| %d | %s | %s | %s | %s |\n", i+1, fmtDur(f.At.Round(100*time.Millisecond)), f.Kind, f.Detail, f.Absorbed)
	}
	return sb.String()
}

// runSoak is `go run ./bench -soak`.
func (b *bench) runSoak(sp soakSpec, out string) int {
	b.progress("soak: %d jobs, max %d tasks, seed %d", sp.Jobs, sp.Max, sp.Seed)
	r := b.soak(sp)
	md := r.markdown()
	fmt.Print(md)
	if out != "" {
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if !r.ok() {
		return 1
	}
	return 0
}

//go:build linux

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

// jobOutcome is one job of the workload as the simulator saw it.
type jobOutcome struct {
	plannedJob
	ID                             int64
	Queue, Assign, Receive, Finish time.Time
	Result, Agent                  string
	Launch                         time.Time // the RunTask that supplied it (zero: none, e.g. the fixed fleet)
}

// fleetRun is one driver through the whole workload.
type fleetRun struct {
	label, notes string
	w            workloadSpec
	limit        int
	err          error
	t0, tEnd     time.Time
	jobs         []jobOutcome
	tasks        []taskRec
	agents       []sim.AgentView
	ctlRequests  int64
	ctlStatuses  string
	ecsCalls     map[string]int
	maxActive    int
	overMax      []string
	leftRunning  int // tasks not STOPPED at the end
	took         time.Duration
	taggedLaunch bool // tasks carry the request they were launched for
	driverErrs   []string
}

// jobSpec is the simulator job of a planned job, compressed.
func (w workloadSpec) jobSpec(j plannedJob) sim.JobSpec {
	return sim.JobSpec{Pool: fleetPool, Name: fmt.Sprintf("b%d-j%02d", j.Burst, j.Index), Duration: w.wall(j.Dur), Demands: j.demands()}
}

func (j plannedJob) demands() []string {
	if j.Docker {
		return []string{"docker"}
	}
	return nil
}

// runFleet drives one driver through the workload, starting the first burst at least `offset`
// after its controller started (so that drivers running side by side burst at different times).
func (b *bench) runFleet(d driver, w workloadSpec, offset time.Duration) (r fleetRun) {
	began := time.Now()
	r = fleetRun{label: d.label(), notes: d.notes(), w: w, limit: d.max()}
	defer func() { r.took = time.Since(began) }()
	e, err := b.newFleetEnv(strings.NewReplacer(" ", "", ",", "-").Replace(d.label()), w)
	if err != nil {
		r.err = err
		return r
	}
	e.limit = d.max()
	defer e.close()
	ctx, cancel := context.WithTimeout(context.Background(), offset+w.wall(w.length()+w.P+25*time.Minute)+8*time.Minute)
	defer cancel()
	if err := d.start(ctx, e); err != nil {
		d.stop()
		r.err = err
		return r
	}
	stopped := false
	stop := func() {
		if !stopped {
			d.stop()
			stopped = true
		}
	}
	defer stop()

	plan := w.jobs()
	r.t0 = time.Now().Add(offset)
	ids := map[int64]int{}
	for i, j := range plan {
		at := r.t0.Add(w.wall(j.At))
		if dl := time.Until(at); dl > 0 {
			time.Sleep(dl)
		}
		id, err := e.sim.QueueJob(w.jobSpec(j))
		if err != nil {
			r.err = err
			return r
		}
		ids[id] = i
	}
	b.progress("fleet %s: %d jobs queued", d.label(), len(plan))

	// Every job finished.
	deadline := r.t0.Add(w.wall(w.length() + w.P + 20*time.Minute))
	for {
		done := 0
		for _, v := range e.sim.Requests() {
			if _, ok := ids[v.ID]; ok && !v.FinishTime.IsZero() {
				done++
			}
		}
		if done == len(plan) {
			break
		}
		if time.Now().After(deadline) {
			r.err = fmt.Errorf("%d of %d jobs unfinished at the deadline", len(plan)-done, len(plan))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	lastFinish := time.Time{}
	for _, v := range e.sim.Requests() {
		if _, ok := ids[v.ID]; ok && v.FinishTime.After(lastFinish) {
			lastFinish = v.FinishTime
		}
	}
	r.tEnd = lastFinish
	if d.drains() {
		// Its tasks leave by themselves: the end is when the last one has stopped (or the settle
		// time of two uncompressed minutes, after which what is left counts as left running).
		settle := time.Now().Add(w.wall(2 * time.Minute))
		for e.activeTasks() > 0 && time.Now().Before(settle) {
			time.Sleep(50 * time.Millisecond)
		}
		r.tEnd = time.Now()
	}
	// Ghosts and orphans are judged after the controller had time for one more pass.
	time.Sleep(w.wall(10 * time.Second))

	stop()
	if de, ok := d.(interface{ errors() []string }); ok {
		r.driverErrs = de.errors()
	}
	r.agents = e.sim.Agents(fleetPool)
	r.tasks = e.taskSnapshot()
	r.ecsCalls = e.ecsCalls()
	r.ctlRequests = e.ctlRequests.Load()
	r.ctlStatuses = e.ctlStatuses()
	e.mu.Lock()
	r.maxActive, r.overMax = e.maxActive, append([]string(nil), e.overMax...)
	e.mu.Unlock()
	for _, t := range r.tasks {
		if t.LastStatus != "STOPPED" {
			r.leftRunning++
		}
		if t.Tags["azp-entrypoint:request"] != "" {
			r.taggedLaunch = true
		}
	}
	reqs := map[int64]sim.RequestView{}
	for _, v := range e.sim.Requests() {
		reqs[v.ID] = v
	}
	var idsSorted []int64
	for id := range ids {
		idsSorted = append(idsSorted, id)
	}
	sort.Slice(idsSorted, func(a, b int) bool { return idsSorted[a] < idsSorted[b] })
	for _, id := range idsSorted {
		v := reqs[id]
		r.jobs = append(r.jobs, jobOutcome{plannedJob: plan[ids[id]], ID: id, Queue: v.QueueTime, Assign: v.AssignTime,
			Receive: v.ReceiveTime, Finish: v.FinishTime, Result: v.Result, Agent: v.AgentName})
	}
	r.matchLaunches()
	return r
}

// matchLaunches ties each job to the RunTask that supplied it: by the task's request tag when the
// controller sets one (azp-entrypoint scale in once mode), else greedily: jobs in queue order take
// the earliest task launched at or after their queue time that no earlier job took (a controller
// without per-request launches is credited with its best possible reaction).
func (r *fleetRun) matchLaunches() {
	byTag := map[string]time.Time{}
	var free []time.Time
	for _, t := range r.tasks {
		// The tag lists the request ids a RunTask call was for, separated by spaces.
		for _, req := range strings.Fields(t.Tags["azp-entrypoint:request"]) {
			if old, ok := byTag[req]; !ok || t.Created.Before(old) {
				byTag[req] = t.Created
			}
		}
		free = append(free, t.Created)
	}
	sort.Slice(free, func(i, j int) bool { return free[i].Before(free[j]) })
	idx := make([]int, len(r.jobs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return r.jobs[idx[a]].Queue.Before(r.jobs[idx[b]].Queue) })
	used := make([]bool, len(free))
	for _, i := range idx {
		j := &r.jobs[i]
		if r.taggedLaunch {
			j.Launch = byTag[fmt.Sprint(j.ID)]
			continue
		}
		for k, at := range free {
			if !used[k] && !at.Before(j.Queue) {
				used[k] = true
				j.Launch = at
				break
			}
		}
	}
}

// runFleets runs the drivers in waves of `parallel` side by side, the i-th one of a wave with its
// bursts offset by i/parallel of the gap, so that no two drivers' task start storms meet on the
// benchmark machine's cores.
func (b *bench) runFleets(ds []driver, w workloadSpec, parallel int) []fleetRun {
	out := make([]fleetRun, len(ds))
	parallel = max(1, min(parallel, len(ds)))
	for start := 0; start < len(ds); start += parallel {
		end := min(len(ds), start+parallel)
		b.runWave(ds[start:end], out[start:end], w, parallel)
	}
	return out
}

func (b *bench) runWave(ds []driver, out []fleetRun, w workloadSpec, parallel int) {
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off := 2*time.Second + time.Duration(i)*w.wall(w.Gap)/time.Duration(parallel)
			b.progress("fleet %s: starting (first burst in %s)", d.label(), fmtDur(off))
			out[i] = b.runFleet(d, w, off)
			if out[i].err != nil {
				b.progress("fleet %s: FAILED: %v", d.label(), out[i].err)
			} else {
				b.progress("fleet %s: done in %s", d.label(), fmtDur(out[i].took))
			}
		}()
	}
	wg.Wait()
}

// fleet builds the fleet's small agent package and runs the named drivers side by side.
func (b *bench) fleet(w workloadSpec, names []string, parallel int) ([]fleetRun, error) {
	var err error
	if b.fleetPkg, err = b.buildFleetPkg(); err != nil {
		return nil, err
	}
	limit := w.PerBurst + w.PerBurst/4 // headroom above the peak, as a user would set AZP_SCALE_MAX
	var ds []driver
	for _, n := range names {
		switch strings.TrimSpace(n) {
		case "once":
			ds = append(ds, &scalerDriver{mode: "once", limit: limit, w: w, ep: b.ep})
		case "once-standby":
			ds = append(ds, &scalerDriver{mode: "once", standby: 2, limit: limit, w: w, ep: b.ep})
		case "persistent":
			ds = append(ds, &scalerDriver{mode: "persistent", limit: limit, w: w, ep: b.ep})
		case "keda":
			ds = append(ds, &kedaDriver{limit: limit, w: w})
		case "fixed":
			ds = append(ds, &fixedDriver{n: w.peakConcurrency(), w: w})
		case "":
		default:
			return nil, fmt.Errorf("unknown driver %q (once, once-standby, persistent, keda, fixed)", n)
		}
	}
	return b.runFleets(ds, w, parallel), nil
}

// buildFleetPkg builds the small agent package the fleet's tasks install (from a cache shared by
// the tasks of one driver, as if baked into the image).
func (b *bench) buildFleetPkg() (pkgbuild.Result, error) {
	r, err := pkgbuild.Build(pkgbuild.Options{Version: agentVersion, Platform: platform, AgentBinary: b.simBin,
		OutDir: filepath.Join(b.tmp, "fleet-packages")})
	if err != nil {
		return r, fmt.Errorf("build the fleet's agent package: %w", err)
	}
	return r, nil
}

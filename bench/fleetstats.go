//go:build linux

package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// dist is the distribution of one latency over the jobs of a run: pooled p50 and p95, and the
// per-burst p50 and p95 (each burst is one repetition: the system is idle again before the next).
type dist struct {
	all      []time.Duration
	perBurst [][]time.Duration
}

func (d dist) p(q float64) time.Duration { return quantile(d.all, q) }

// spread is min–max over bursts of the per-burst quantile q.
func (d dist) spread(q float64) (time.Duration, time.Duration, bool) {
	lo, hi, ok := time.Duration(0), time.Duration(0), false
	for _, s := range d.perBurst {
		if len(s) == 0 {
			continue
		}
		v := quantile(s, q)
		if !ok || v < lo {
			lo = v
		}
		if !ok || v > hi {
			hi = v
		}
		ok = true
	}
	return lo, hi, ok
}

func secs(d time.Duration) string {
	s := d.Seconds()
	switch {
	case s >= 100:
		return fmt.Sprintf("%.0f s", s)
	case s >= 10:
		return fmt.Sprintf("%.1f s", s)
	}
	return fmt.Sprintf("%.2f s", s)
}

// cell: "p50 X (min–max) · p95 Y (min–max)" over bursts.
func (d dist) cell() string {
	if len(d.all) == 0 {
		return "–"
	}
	one := func(q float64, name string) string {
		s := name + " " + secs(d.p(q))
		if lo, hi, ok := d.spread(q); ok && len(d.perBurst) > 1 {
			s += fmt.Sprintf(" (%s–%s)", secs(lo), secs(hi))
		}
		return s
	}
	return one(0.5, "p50") + "<br>" + one(0.95, "p95")
}

// fleetFigures are the figures of one run, in uncompressed time.
type fleetFigures struct {
	reaction, wait dist
	firstWait      dist // per burst, the waits of its first `firstN` assigned jobs
	taskMin        float64
	taskMinBurst   []float64
	idleMin        float64
	launched       int
	served, failed int
	adoPerJob      float64
	ecsPerJob      float64
	ghosts         []string
	orphans        []string
	maxActive      int
	limit          int
	overMax        int
	leftRunning    int
}

const firstN = 2

func (r *fleetRun) figures() fleetFigures {
	w := r.w
	f := fleetFigures{maxActive: r.maxActive, limit: r.limit, overMax: len(r.overMax), leftRunning: r.leftRunning}
	f.reaction.perBurst = make([][]time.Duration, w.Bursts)
	f.wait.perBurst = make([][]time.Duration, w.Bursts)
	f.firstWait.perBurst = make([][]time.Duration, w.Bursts)
	busy := 0.0
	for _, j := range r.jobs {
		if j.Result == "succeeded" {
			f.served++
		} else {
			f.failed++
		}
		if !j.Launch.IsZero() {
			d := w.unc(j.Launch.Sub(j.Queue))
			f.reaction.all = append(f.reaction.all, d)
			f.reaction.perBurst[j.Burst] = append(f.reaction.perBurst[j.Burst], d)
		}
		if !j.Assign.IsZero() {
			d := w.unc(j.Assign.Sub(j.Queue))
			f.wait.all = append(f.wait.all, d)
			f.wait.perBurst[j.Burst] = append(f.wait.perBurst[j.Burst], d)
		}
		if !j.Assign.IsZero() && !j.Finish.IsZero() {
			busy += w.unc(clip(j.Assign, j.Finish, r.t0, r.tEnd)).Minutes()
		}
	}
	for b, s := range f.wait.perBurst {
		c := append([]time.Duration(nil), s...)
		sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
		c = c[:min(firstN, len(c))]
		f.firstWait.perBurst[b] = c
		f.firstWait.all = append(f.firstWait.all, c...)
	}
	f.taskMinBurst = make([]float64, w.Bursts)
	for _, t := range r.tasks {
		end := t.Ended
		if end.IsZero() {
			end = r.tEnd
		}
		f.taskMin += w.unc(clip(t.Created, end, r.t0, r.tEnd)).Minutes()
		for b := range w.Bursts {
			ws := r.t0.Add(w.wall(time.Duration(b) * w.Gap))
			we := r.t0.Add(w.wall(time.Duration(b+1) * w.Gap))
			if b == w.Bursts-1 {
				we = r.tEnd
			}
			f.taskMinBurst[b] += w.unc(clip(t.Created, end, ws, we)).Minutes()
		}
	}
	f.idleMin = f.taskMin - busy
	f.launched = len(r.tasks)
	if n := len(r.jobs); n > 0 {
		f.adoPerJob = float64(r.ctlRequests) / float64(n)
		calls := 0
		for _, c := range r.ecsCalls {
			calls += c
		}
		f.ecsPerJob = float64(calls) / float64(n)
	}
	// Ghosts: agents still registered whose task is gone (or never existed); orphans: tasks still
	// running with no online agent of theirs. The placeholders are neither.
	taskOf := func(agent string) *taskRec {
		for i := range r.tasks {
			if strings.Contains(agent, r.tasks[i].ID) {
				return &r.tasks[i]
			}
		}
		return nil
	}
	online := map[string]bool{}
	for _, a := range r.agents {
		if strings.Contains(a.Name, "placeholder") {
			continue
		}
		t := taskOf(a.Name)
		if a.Status == "online" && t != nil {
			online[t.ID] = true
		}
		if t == nil || t.LastStatus == "STOPPED" {
			f.ghosts = append(f.ghosts, fmt.Sprintf("%s (%s)", a.Name, a.Status))
		}
	}
	for _, t := range r.tasks {
		if t.LastStatus != "STOPPED" && !online[t.ID] {
			f.orphans = append(f.orphans, t.ID+" ("+t.LastStatus+")")
		}
	}
	return f
}

// clip is the length of [a, b] inside [lo, hi].
func clip(a, b, lo, hi time.Time) time.Duration {
	if a.Before(lo) {
		a = lo
	}
	if b.After(hi) {
		b = hi
	}
	if !b.After(a) {
		return 0
	}
	return b.Sub(a)
}

func minMax(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// fleetMarkdown writes the scaler section: the table, the ratios and targets, and the notes.
func fleetMarkdown(runs []fleetRun, w workloadSpec, took time.Duration) string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	figs := make([]fleetFigures, len(runs))
	for i := range runs {
		figs[i] = runs[i].figures()
	}
	p("## The scaler: queue-to-agent latency, cost and safety\n\n")
	p("One workload, %d bursts of %d jobs %s apart, durations spread evenly from %s to %s, every %s job demanding `docker`, driven %d ways side by side, each with its own simulator and its own local ECS (`internal/sim/ecssim`, real `azp-entrypoint` tasks as PID 1 of their own PID namespace) with the provisioning delay P = %s. ",
		w.Bursts, w.PerBurst, secs(w.Gap), secs(w.MinDur), secs(w.MaxDur), ordinal(w.DockerEvery), len(runs), secs(w.P))
	p("Time compression k = %g: every duration (jobs, gaps, P, poll intervals, timeouts) runs %g× faster; **all figures are in uncompressed seconds** (wall time × k), so the processes' own uncompressed work (agent start, requests) weighs k times more than on Fargate. ", w.K, w.K)
	p("Drivers run in waves side by side (`-fleet-parallel`), those of a wave starting their bursts apart so that their task start storms do not meet. The whole section took %s.\n\n", fmtDur(took.Round(time.Second)))
	p("| Figure |")
	for _, r := range runs {
		p(" %s |", r.label)
	}
	p("\n|---|")
	for range runs {
		p("---|")
	}
	p("\n")
	row := func(name string, cell func(i int) string) {
		p("| %s |", name)
		for i := range runs {
			if runs[i].err != nil && runs[i].jobs == nil {
				p(" failed |")
				continue
			}
			p(" %s |", cell(i))
		}
		p("\n")
	}
	row("Scaler reaction: queued → RunTask called", func(i int) string { return figs[i].reaction.cell() })
	row("Queued → job assigned", func(i int) string { return figs[i].wait.cell() })
	row(fmt.Sprintf("Queued → assigned, first %d jobs of a burst (max)", firstN), func(i int) string {
		if len(figs[i].firstWait.all) == 0 {
			return "–"
		}
		return secs(quantile(figs[i].firstWait.all, 1))
	})
	row("Task-minutes (per burst min–max)", func(i int) string {
		lo, hi := minMax(figs[i].taskMinBurst)
		return fmt.Sprintf("%.0f (%.0f–%.0f)", figs[i].taskMin, lo, hi)
	})
	row("Idle task-minutes", func(i int) string { return fmt.Sprintf("%.0f", figs[i].idleMin) })
	row("Tasks launched per job served", func(i int) string {
		f := figs[i]
		if f.served == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f (%d / %d)", float64(f.launched)/float64(f.served), f.launched, f.served)
	})
	row("Jobs failed", func(i int) string { return fmt.Sprint(figs[i].failed) })
	row("Azure DevOps requests per job (controller)", func(i int) string { return fmt.Sprintf("%.1f", figs[i].adoPerJob) })
	row("ECS API calls per job", func(i int) string { return fmt.Sprintf("%.2f", figs[i].ecsPerJob) })
	row("Ghost agents at the end", func(i int) string { return fmt.Sprint(len(figs[i].ghosts)) })
	row("Orphan tasks at the end", func(i int) string { return fmt.Sprint(len(figs[i].orphans)) })
	row("Tasks left running at the end", func(i int) string { return fmt.Sprint(figs[i].leftRunning) })
	row("Highest concurrent tasks / max", func(i int) string {
		f := figs[i]
		s := fmt.Sprintf("%d / %d", f.maxActive, f.limit)
		if f.overMax > 0 {
			s += fmt.Sprintf(" **exceeded %d times**", f.overMax)
		}
		return s
	})
	p("\n")

	// Targets (issue 16).
	find := func(pred func(fleetRun) bool) int {
		for i, r := range runs {
			if pred(r) && (r.err == nil || r.jobs != nil) {
				return i
			}
		}
		return -1
	}
	once := find(func(r fleetRun) bool { return strings.HasSuffix(r.label, "scale, once") })
	once2 := find(func(r fleetRun) bool { return strings.Contains(r.label, "once, standby") })
	keda := find(func(r fleetRun) bool { return strings.HasPrefix(r.label, "KEDA") })
	fixed := find(func(r fleetRun) bool { return strings.HasPrefix(r.label, "fixed") })
	type target struct{ what, value, goal, met string }
	var ts []target
	yes := func(ok bool) string { return yesNo(ok) }
	if once >= 0 {
		f := figs[once]
		ts = append(ts, target{"Reaction, once: p50 / p95", secs(f.reaction.p(0.5)) + " / " + secs(f.reaction.p(0.95)), "≤ 3 s / ≤ 8 s",
			yes(len(f.reaction.all) > 0 && f.reaction.p(0.5) <= 3*time.Second && f.reaction.p(0.95) <= 8*time.Second)})
		if keda >= 0 {
			k := figs[keda]
			ts = append(ts, target{"Reaction, KEDA-style (for reference)", secs(k.reaction.p(0.5)) + " / " + secs(k.reaction.p(0.95)), "about 15 s / 30 s", "–"})
			ratio := float64(f.wait.p(0.5)) / float64(max(1, k.wait.p(0.5)))
			ts = append(ts, target{"Queued → assigned p50, once ÷ KEDA-style", fmt.Sprintf("%.2f (%s ÷ %s)", ratio, secs(f.wait.p(0.5)), secs(k.wait.p(0.5))), "≤ 0.85", yes(ratio <= 0.85)})
		}
		over := float64(f.launched) / float64(max(1, f.served))
		ts = append(ts, target{"Over-provisioning, once: tasks per job served", fmt.Sprintf("%.2f", over), "≤ 1.05", yes(over <= 1.05)})
		if fixed >= 0 {
			ratio := f.taskMin / max(1, figs[fixed].taskMin)
			ts = append(ts, target{"Task-minutes, once ÷ fixed fleet", fmt.Sprintf("%.2f (%.0f ÷ %.0f)", ratio, f.taskMin, figs[fixed].taskMin), "≤ 0.5", yes(ratio <= 0.5)})
		}
		ts = append(ts, target{"p95 queued → assigned, once", secs(f.wait.p(0.95)), "≤ P + 15 s = " + secs(w.P+15*time.Second), yes(len(f.wait.all) > 0 && f.wait.p(0.95) <= w.P+15*time.Second)})
	}
	if once2 >= 0 {
		f := figs[once2]
		v := quantile(f.firstWait.all, 1)
		ts = append(ts, target{fmt.Sprintf("First %d jobs of a burst, standby 2: worst queued → assigned", firstN), secs(v), "≤ 5 s", yes(len(f.firstWait.all) > 0 && v <= 5*time.Second)})
	}
	for i, r := range runs {
		if !strings.HasPrefix(r.label, "azp-entrypoint") {
			continue
		}
		f := figs[i]
		ts = append(ts, target{"Safety, " + strings.TrimPrefix(r.label, "azp-entrypoint ") + ": ghosts, orphans, max exceeded",
			fmt.Sprintf("%d, %d, %d", len(f.ghosts), len(f.orphans), f.overMax), "0, 0, 0", yes(len(f.ghosts) == 0 && len(f.orphans) == 0 && f.overMax == 0 && f.maxActive <= f.limit && r.err == nil)})
	}
	p("### Targets\n\n| Target | value | goal | met |\n|---|---|---|---|\n")
	for _, t := range ts {
		p("| %s | %s | %s | %s |\n", t.what, t.value, t.goal, t.met)
	}
	p("\n")

	p("### Drivers\n\n")
	for i, r := range runs {
		p("- **%s**: %s.", r.label, r.notes)
		if r.err != nil {
			p(" **Error:** %v.", r.err)
		}
		p(" Controller's requests by status: %s; ECS calls: %s.", orDash(r.ctlStatuses), fmtCalls(r.ecsCalls))
		if n := len(r.driverErrs); n > 0 {
			p(" %d controller errors, the first: %s.", n, r.driverErrs[0])
		}
		if g := figs[i].ghosts; len(g) > 0 {
			p(" Ghosts: %s.", strings.Join(g, ", "))
		}
		if o := figs[i].orphans; len(o) > 0 {
			p(" Orphans: %s.", strings.Join(o, ", "))
		}
		if len(r.overMax) > 0 {
			p(" Max exceeded at: %s.", strings.Join(r.overMax[:min(5, len(r.overMax))], "; "))
		}
		p("\n")
	}
	p("\n")
	p("**How the figures are taken.** *Reaction*: from the job's queue time to the creation of the task launched for it (`createdAt`, set inside RunTask): by the task's `azp-entrypoint:request` tag where the scaler sets one, else jobs in queue order take the earliest not yet taken task launched after they were queued (the controller's best case). ")
	p("*Queued → assigned*: the simulator's `queueTime` to `assignTime`. p50 and p95 are over all %d jobs; in brackets the lowest and highest per-burst value (each burst is one repetition: everything is idle again before the next). ", w.Bursts*w.PerBurst)
	p("*Task-minutes*: each task from RunTask to its container's end (Fargate bills from the image pull to the task's end; the ENI detach after it is not billed), clipped to the measured window: from the first burst to the last job's end (for controllers whose tasks leave by themselves: until the last of them stopped); the fixed fleet's agents count from the first burst. *Idle* = task-minutes − the jobs' assigned → finished time. ")
	p("*Requests per job*: every request the controller made to the simulator (its own port), and every ECS API call the local ECS served, divided by the jobs of the workload. *Ghost*: an agent left in the pool whose task is stopped; *orphan*: a task not stopped without an online agent; placeholders are neither. *Highest concurrent tasks*: tasks not `STOPPED`, checked at every status change of every task.\n\n")
	return sb.String()
}

func ordinal(n int) string {
	switch n {
	case 1:
		return ""
	case 2:
		return "second"
	case 3:
		return "third"
	}
	return fmt.Sprintf("%d-th", n)
}

func orDash(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func fmtCalls(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

package main

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// The scaler benchmark's workload (issue 16): three bursts of 40 jobs ten minutes apart, job
// durations spread evenly between 2 and 8 minutes, half of them demanding `docker`; Fargate's
// provisioning delay P (image pull and ENI) is 60 s (../shared/reference/scaling.md, "A Fargate
// task's start is dominated by the image pull (about a minute ...)").
//
// Every duration of the workload and of the drivers (job lengths, gaps, P, every poll interval and
// timeout) is divided by one compression factor k; every figure is reported in uncompressed
// seconds, that is wall time × k. The processes' own work (an agent's start, a request's round
// trip) is not compressed, so it weighs k times more in the figures than it would on Fargate:
// the compressed run is a pessimistic picture of the real one.
type workloadSpec struct {
	Bursts, PerBurst int
	Gap              time.Duration // between the starts of two bursts
	MinDur, MaxDur   time.Duration // job durations, spread evenly
	DockerEvery      int           // every n-th job demands docker (2: half)
	P                time.Duration // provisioning delay of a task (PROVISIONING + PENDING)
	K                float64       // compression factor (≤ 10)
}

func defaultWorkload(k float64) workloadSpec {
	return workloadSpec{Bursts: 3, PerBurst: 40, Gap: 10 * time.Minute, MinDur: 2 * time.Minute, MaxDur: 8 * time.Minute,
		DockerEvery: 2, P: 60 * time.Second, K: k}
}

// plannedJob is one job of the workload, in uncompressed time from the workload's start.
type plannedJob struct {
	Burst, Index int
	At, Dur      time.Duration
	Docker       bool
}

// wall converts an uncompressed duration into the wall time of the compressed run.
func (w workloadSpec) wall(d time.Duration) time.Duration { return time.Duration(float64(d) / w.K) }

// unc converts a wall-time duration of the compressed run into uncompressed time.
func (w workloadSpec) unc(d time.Duration) time.Duration { return time.Duration(float64(d) * w.K) }

func (w workloadSpec) validate() error {
	if w.K < 1 || w.K > 10 {
		return fmt.Errorf("compression factor %g: must be between 1 and 10 (issue 16)", w.K)
	}
	if w.Bursts < 1 || w.PerBurst < 1 || w.MinDur <= 0 || w.MaxDur < w.MinDur {
		return fmt.Errorf("workload %+v is empty or inverted", w)
	}
	return nil
}

// jobs lists the workload: every job of a burst is queued at the burst's start; within a burst the
// durations go evenly from MinDur to MaxDur, and every DockerEvery-th job demands docker, so that
// both halves cover the whole range of durations.
func (w workloadSpec) jobs() []plannedJob {
	var out []plannedJob
	for b := range w.Bursts {
		for i := range w.PerBurst {
			d := w.MinDur
			if w.PerBurst > 1 {
				d += time.Duration(float64(w.MaxDur-w.MinDur) * float64(i) / float64(w.PerBurst-1))
			}
			out = append(out, plannedJob{Burst: b, Index: i, At: time.Duration(b) * w.Gap, Dur: d.Round(time.Second),
				Docker: w.DockerEvery > 0 && i%w.DockerEvery == 1})
		}
	}
	return out
}

// peakConcurrency is the most jobs that would run at once if each started the moment it is queued:
// the size of a fixed fleet that never makes a job wait for an agent.
func (w workloadSpec) peakConcurrency() int {
	type ev struct {
		at time.Duration
		d  int
	}
	var evs []ev
	for _, j := range w.jobs() {
		evs = append(evs, ev{j.At, +1}, ev{j.At + j.Dur, -1})
	}
	sort.Slice(evs, func(a, b int) bool {
		if evs[a].at != evs[b].at {
			return evs[a].at < evs[b].at
		}
		return evs[a].d < evs[b].d // an end before a start at the same instant
	})
	n, peak := 0, 0
	for _, e := range evs {
		n += e.d
		peak = max(peak, n)
	}
	return peak
}

// length is the uncompressed time from the first queue to the end of the longest job of the last
// burst if it started at once.
func (w workloadSpec) length() time.Duration {
	return time.Duration(w.Bursts-1)*w.Gap + w.MaxDur
}

// quantile of sorted samples (nearest rank); 0 when empty.
func quantile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append([]time.Duration(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	r := int(math.Ceil(q*float64(len(c)))) - 1
	return c[max(0, min(r, len(c)-1))]
}

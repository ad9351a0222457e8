//go:build linux

package main

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// The pool of figure 5: 10,000 agents, 9,000 of them stale ghosts that prune must delete. The
// other 1,000 must survive: online agents with the prefix, agents with the prefix that went
// offline only 10 minutes ago, and stale agents with another name.
const (
	pruneStale     = 9000
	pruneOnline    = 500
	pruneRecent    = 300
	pruneOther     = 200
	prunePrefix    = "ghost-"
	pruneRoute     = `/_apis/distributedtask/pools/[0-9]+/agents`
	pruneLimitN    = 1000
	pruneLimitWind = 2 * time.Second
)

var pruneRouteRE = regexp.MustCompile(pruneRoute)

// pruneRun is one prune of a fresh pool.
type pruneRun struct {
	took     time.Duration
	deleted  int // stale agents gone
	survived int // of the 1,000 that must stay
	requests int // requests to the rate-limited route
	limited  int // 429 answers
	simLimit int // 429 answers in the simulator's own request log (cross-check)
	checked  int // 429 answers whose retry was found
	// Violations of the per-route rule (see retryAfterCheck) and the smallest margin seen.
	violations int
	minMargin  time.Duration
	// Requests that arrived inside a Retry-After window announced to another worker of the same
	// process (the stricter, client-wide reading).
	clientWide int
	err        error
}

func (b *bench) pruneRuns() []pruneRun {
	var runs []pruneRun
	for i := 1; i <= b.pruneReps; i++ {
		r := b.pruneOnce(i)
		if r.err != nil {
			b.progress("prune %d/%d: FAILED: %v", i, b.pruneReps, r.err)
		} else {
			b.progress("prune %d/%d: %s for %d deletions, %d requests, %d answered 429, %d retries checked, %d ignored Retry-After (client-wide: %d)",
				i, b.pruneReps, fmtDur(r.took), r.deleted, r.requests, r.limited, r.checked, r.violations, r.clientWide)
		}
		runs = append(runs, r)
	}
	return runs
}

func (b *bench) pruneOnce(i int) (r pruneRun) {
	srv := b.e.srv
	poolName := fmt.Sprintf("Prune%d", i)
	srv.AddPool(poolName)
	stale := time.Now().Add(-2 * time.Hour)
	for _, s := range []struct {
		n      int
		status string
		since  time.Time
		prefix string
	}{
		{pruneStale, "offline", stale, prunePrefix},
		{pruneOnline, "online", time.Now(), prunePrefix + "live-"},
		{pruneRecent, "offline", time.Now().Add(-10 * time.Minute), prunePrefix + "recent-"},
		{pruneOther, "offline", stale, "other-"},
	} {
		if err := srv.SeedAgents(poolName, s.n, s.status, s.since, s.prefix); err != nil {
			r.err = err
			return r
		}
	}
	if err := srv.RateLimit(sim.RateLimitSpec{PathRegexp: pruneRoute, N: pruneLimitN, Window: pruneLimitWind}); err != nil {
		r.err = err
		return r
	}
	defer srv.ClearRateLimits()
	b.e.resetLog()
	env := b.baseEnv("AZP_URL="+b.e.org, "AZP_TOKEN="+b.e.token, "AZP_POOL="+poolName, "AZP_LOG_FORMAT=json")
	d, p, err := runProc("azp-entrypoint prune", b.tmp, env, 8*time.Minute, b.ep, "prune", "--prefix", prunePrefix, "--offline-for", "1h")
	r.strays()
	if err != nil {
		r.err = err
		return r
	}
	r.took = d
	_ = p
	// Tally the pool.
	for _, a := range srv.Agents(poolName) {
		if n, ok := strings.CutPrefix(a.Name, prunePrefix); ok {
			if _, err := strconv.Atoi(n); err == nil {
				continue // a stale ghost that survived: counted below
			}
		}
		r.survived++
	}
	remaining := len(srv.Agents(poolName))
	r.deleted = pruneStale - (remaining - r.survived)
	if r.deleted != pruneStale || r.survived != pruneOnline+pruneRecent+pruneOther {
		r.err = fmt.Errorf("after prune: %d of %d stale agents deleted, %d of %d others kept", r.deleted, pruneStale, r.survived, pruneOnline+pruneRecent+pruneOther)
	}
	for _, l := range srv.RequestLog() {
		if l.Status == 429 && pruneRouteRE.MatchString(l.Path) {
			r.simLimit++
		}
	}
	retryAfterCheck(&r, b.e.log())
	if r.simLimit != r.limited && r.err == nil {
		r.err = fmt.Errorf("the simulator logged %d answers 429, the benchmark's wrapper %d", r.simLimit, r.limited)
	}
	// Leave nothing behind for the next run.
	for _, a := range srv.Agents(poolName) {
		srv.DeleteAgent(poolName, a.Name)
	}
	return r
}

// strays is a no-op hook: prune starts no child, but check anyway.
func (r *pruneRun) strays() {
	if n := killStrays(); n > 0 && r.err == nil {
		r.err = fmt.Errorf("prune left %d processes behind", n)
	}
}

// retryAfterCheck applies the rule of figure 5 to the wire log of one prune (the only client of
// the simulator while it runs).
//
// Per route (the rule): a route is a method and an exact path, e.g. DELETE
// /sim/_apis/distributedtask/pools/7/agents/1234, which is what one Retry-After answered. For every
// answer 429 with Retry-After N, the next request with the same method and path must arrive at
// least N seconds after that 429 was written (measured from the end of the 429's handler, i.e.
// strictly: the client cannot have read the answer earlier). A later arrival is compliant; an
// earlier one is a violation. A 429 with no later request on its route is a request the client
// gave up, which prune would report as a failure.
//
// Client-wide (reported, not the rule): any request to the rate-limited routes that arrived after
// some 429 had been written and before that 429's Retry-After ran out. prune deletes with 8
// workers and each honours the Retry-After it received itself, so the other workers' requests
// in flight or started in that window count here.
func retryAfterCheck(r *pruneRun, log []wireRec) {
	// The wrapper appends a request when its handler returns: put the log in arrival order.
	log = append([]wireRec(nil), log...)
	sort.SliceStable(log, func(i, j int) bool { return log[i].Start.Before(log[j].Start) })
	type key struct{ method, path string }
	var limited []int
	next := map[key][]int{}
	for i, w := range log {
		if !pruneRouteRE.MatchString(w.Path) {
			continue
		}
		r.requests++
		k := key{w.Method, w.Path}
		next[k] = append(next[k], i)
		if w.Status == 429 {
			limited = append(limited, i)
		}
	}
	r.limited = len(limited)
	haveMargin := false
	type window struct{ from, to time.Time }
	var windows []window
	for _, i := range limited {
		w := log[i]
		secs, err := strconv.Atoi(w.RetryAfter)
		if err != nil {
			if r.err == nil {
				r.err = fmt.Errorf("429 for %s %s without a Retry-After in seconds (%q)", w.Method, w.Path, w.RetryAfter)
			}
			continue
		}
		wait := time.Duration(secs) * time.Second
		windows = append(windows, window{w.End, w.End.Add(wait)})
		// The next request on the same route (the log is in arrival order).
		for _, j := range next[key{w.Method, w.Path}] {
			if j <= i || !log[j].Start.After(w.Start) {
				continue
			}
			r.checked++
			margin := log[j].Start.Sub(w.End) - wait
			if margin < 0 {
				r.violations++
			}
			if !haveMargin || margin < r.minMargin {
				r.minMargin, haveMargin = margin, true
			}
			break
		}
	}
	for _, w := range log {
		if !pruneRouteRE.MatchString(w.Path) {
			continue
		}
		for _, win := range windows {
			if w.Start.After(win.from) && w.Start.Before(win.to) {
				r.clientWide++
				break
			}
		}
	}
	if r.checked != r.limited && r.err == nil {
		r.err = fmt.Errorf("%d answers 429 but only %d retries found", r.limited, r.checked)
	}
}

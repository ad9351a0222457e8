//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

const pool = "Default"

// settle is how long an agent stays online before SIGTERM: long enough to be idle in its long
// poll, as an agent waiting for work is.
const settle = 500 * time.Millisecond

// agentRun is one start-to-stop of an agent under start.sh or azp-entrypoint.
type agentRun struct {
	who, mode, name string
	err             error

	online   time.Duration // process start -> the server sets the agent online (statusChangedOn)
	leave    time.Duration // SIGTERM -> the agent is deleted from the pool (0: not deregistering)
	exited   time.Duration // SIGTERM -> the supervising process exits
	exitCode int
	hwm      int64 // VmHWM of the supervising process just before SIGTERM
	strays   int   // processes left behind and killed by the benchmark

	// azp-entrypoint only, from its JSON log (all from process start):
	toListener time.Duration // "listener started"
	configure  time.Duration // "configuring the agent" -> "agent registered": the fake agent's configure
	simTime    time.Duration // time the simulator spent answering the entrypoint's own requests before the listener started
	own        time.Duration // toListener - configure - simTime
	requests   int           // the entrypoint's own requests before the listener started
}

type runSpec struct {
	who, mode, name string
	dir             string // working directory
	argv, env       []string
	deregister      bool // SIGTERM ends with the agent deleted from the pool
}

// baseEnv is the environment every child starts from: nothing of the caller's but PATH.
func (b *bench) baseEnv(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(b.tmp, "home"), "LANG=C.UTF-8"}, extra...)
}

func (b *bench) startShSpec(mode, name, dir string, baked bool) runSpec {
	env := b.baseEnv("AZP_URL="+b.e.org, "AZP_TOKEN="+b.e.token, "AZP_POOL="+pool, "AZP_AGENT_NAME="+name, "TARGETARCH="+platform)
	if baked {
		env = append(env, "BENCH_BAKED=true")
	}
	return runSpec{who: "start.sh", mode: mode, name: name, dir: dir, argv: []string{"bash", b.startSh}, env: env, deregister: true}
}

func (b *bench) entrypointSpec(mode, name, agentDir string, deregister bool) runSpec {
	state := filepath.Join(b.tmp, "state", name)
	env := b.baseEnv("AZP_URL="+b.e.org, "AZP_TOKEN="+b.e.token, "AZP_POOL="+pool, "AZP_AGENT_NAME="+name,
		"AZP_AGENT_DIR="+agentDir, "AZP_STATE_DIR="+state, "AZP_AGENT_PLATFORM="+platform,
		"AZP_LOG_FORMAT=json", "AZP_WORK_MIN_FREE=1MiB", fmt.Sprintf("AZP_DEREGISTER=%t", deregister))
	return runSpec{who: "azp-entrypoint", mode: mode, name: name, dir: b.tmp, argv: []string{b.ep}, env: env, deregister: deregister}
}

// agentRun starts the process, waits until the server sees the agent online, lets it idle, sends
// SIGTERM and measures until the agent is gone from the pool and the process has exited.
func (b *bench) agentRun(s runSpec) (r agentRun) {
	r = agentRun{who: s.who, mode: s.mode, name: s.name}
	defer func() {
		r.strays = killStrays()
		if r.err != nil {
			b.progress("  %s %s %s: FAILED: %v", s.who, s.mode, s.name, r.err)
		}
	}()
	b.e.resetLog()
	p, err := startProc(s.who, s.dir, s.env, s.argv...)
	if err != nil {
		r.err = err
		return r
	}
	defer p.kill()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	go func() {
		select {
		case <-p.done: // an early exit ends the wait
		case <-ctx.Done():
		}
		cancel()
	}()
	a, err := b.e.srv.WaitAgent(ctx, pool, s.name, func(a sim.AgentView) bool {
		return a.ID != 0 && a.Status == "online" && a.StatusChangedOn.After(p.start)
	})
	cancel()
	if err != nil {
		r.err = fmt.Errorf("agent not online (process exit code %d): %v\n%s", exitCodeOf(p), err, p.tail(15))
		return r
	}
	r.online = a.StatusChangedOn.Sub(p.start)

	time.Sleep(settle)
	if hwm, err := vmHWM(p.pid()); err == nil {
		r.hwm = hwm
	}
	sigAt := time.Now()
	if err := p.signal(syscall.SIGTERM); err != nil {
		r.err = fmt.Errorf("SIGTERM: %w", err)
		return r
	}
	if s.deregister {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := b.e.srv.WaitAgent(ctx, pool, s.name, func(a sim.AgentView) bool { return a.ID == 0 })
		cancel()
		if err != nil {
			r.err = fmt.Errorf("agent still in the pool 2 minutes after SIGTERM:\n%s", p.tail(15))
			return r
		}
		r.leave = time.Since(sigAt)
	}
	if !p.wait(2 * time.Minute) {
		r.err = fmt.Errorf("still running 2 minutes after SIGTERM:\n%s", p.tail(15))
		return r
	}
	r.exited = p.end.Sub(sigAt)
	r.exitCode = p.code
	if s.who == "azp-entrypoint" && strings.HasPrefix(s.mode, "warm") {
		// Cold, the simulator's time is mostly the download, which overlaps with the
		// entrypoint's own extraction: no meaningful split.
		r.err = b.breakdown(&r, p)
	}
	return r
}

func exitCodeOf(p *proc) int {
	select {
	case <-p.done:
		return p.code
	default:
		return -1
	}
}

// breakdown splits the entrypoint's time to "listener started" into its own work, the fake
// agent's configure and the simulator's answers.
func (b *bench) breakdown(r *agentRun, p *proc) error {
	recs := records(p.out.String())
	listener, ok := firstRecord(recs, "listener started")
	if !ok {
		return errors.New(`no "listener started" record in the entrypoint's log`)
	}
	r.toListener = listener.Sub(p.start)
	cfgFrom, ok1 := firstRecord(recs, "configuring the agent")
	cfgTo, ok2 := firstRecord(recs, "agent registered")
	if ok1 && ok2 {
		r.configure = cfgTo.Sub(cfgFrom)
	}
	for _, w := range b.e.log() {
		if w.Start.Before(p.start) || w.End.After(listener) {
			continue
		}
		if ok1 && ok2 && !w.Start.Before(cfgFrom) && !w.End.After(cfgTo) {
			continue // the fake agent's configure talking to the server
		}
		r.simTime += w.End.Sub(w.Start)
		r.requests++
	}
	r.own = r.toListener - r.configure - r.simTime
	return nil
}

func (r agentRun) summary() string {
	if r.err != nil {
		return "failed"
	}
	parts := []string{"online " + fmtDur(r.online)}
	if r.leave > 0 {
		parts = append(parts, "leave "+fmtDur(r.leave))
	}
	parts = append(parts, fmt.Sprintf("exit %s (code %d)", fmtDur(r.exited), r.exitCode))
	if r.toListener > 0 {
		parts = append(parts, fmt.Sprintf("own share %s (to listener %s, configure %s, simulator %s over %d requests)",
			fmtDur(r.own), fmtDur(r.toListener), fmtDur(r.configure), fmtDur(r.simTime), r.requests))
	}
	if r.strays > 0 {
		parts = append(parts, fmt.Sprintf("%d stray processes killed", r.strays))
	}
	return strings.Join(parts, ", ")
}

// coldRuns is figure 1 (and samples for 3 and 4): a fresh agent directory each time; the two
// entrypoints alternate so that any drift of the machine hits both alike.
func (b *bench) coldRuns() (sh, ep []agentRun) {
	for i := 1; i <= b.coldReps; i++ {
		name := fmt.Sprintf("bench-sh-cold-%d", i)
		dir := filepath.Join(b.tmp, "runs", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			sh = append(sh, agentRun{who: "start.sh", err: err})
			continue
		}
		r := b.agentRun(b.startShSpec("cold", name, dir, false))
		b.progress("cold %d/%d start.sh: %s", i, b.coldReps, r.summary())
		sh = append(sh, r)
		b.retire(dir)

		name = fmt.Sprintf("bench-ep-cold-%d", i)
		dir = filepath.Join(b.tmp, "runs", name)
		r = b.agentRun(b.entrypointSpec("cold", name, dir, true))
		b.progress("cold %d/%d azp-entrypoint: %s", i, b.coldReps, r.summary())
		ep = append(ep, r)
		b.retire(dir)
	}
	return sh, ep
}

// warmRuns is figure 2: the package is already in the agent directory (baked into the image).
//   - start.sh "baked": the derived-image variant that skips the download (BENCH_BAKED=true);
//     it still configures every time.
//   - azp-entrypoint "new registration": package baked, no registration (a new container).
//   - azp-entrypoint "existing registration": package baked and the agent's configuration from a
//     previous run of the same agent with AZP_DEREGISTER=false (a restarted container with a
//     persistent agent directory): no configure at all.
func (b *bench) warmRuns() (shBaked, epNew, epReg []agentRun, err error) {
	shDir := filepath.Join(b.tmp, "baked-sh")
	epDir := filepath.Join(b.tmp, "baked-ep")
	for _, d := range []string{shDir, epDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, nil, err
		}
	}
	if _, _, err := runProc("curl | tar -xz", shDir, b.baseEnv(), 5*time.Minute, "bash", "-c", `set -o pipefail; curl -sS "$1" | tar -xz`, "bake", b.pkgURL); err != nil {
		return nil, nil, nil, fmt.Errorf("bake the package for start.sh: %w", err)
	}
	if _, _, err := runProc("azp-entrypoint install", b.tmp, b.baseEnv("AZP_LOG_FORMAT=json"), 5*time.Minute, b.installArgv(epDir)...); err != nil {
		return nil, nil, nil, fmt.Errorf("bake the package for azp-entrypoint: %w", err)
	}
	for i := 1; i <= b.reps; i++ {
		r := b.agentRun(b.startShSpec("baked", fmt.Sprintf("bench-sh-baked-%d", i), shDir, true))
		b.progress("warm %d/%d start.sh (baked): %s", i, b.reps, r.summary())
		shBaked = append(shBaked, r)
		r = b.agentRun(b.entrypointSpec("warm-new", fmt.Sprintf("bench-ep-warm-%d", i), epDir, true))
		b.progress("warm %d/%d azp-entrypoint (baked, new registration): %s", i, b.reps, r.summary())
		epNew = append(epNew, r)
	}
	// One run that keeps its registration, then the measured restarts of the same agent.
	name := "bench-ep-warm-reg"
	if r := b.agentRun(b.entrypointSpec("warm-reg-setup", name, epDir, false)); r.err != nil {
		return shBaked, epNew, nil, fmt.Errorf("register the agent for the warm restarts: %w", r.err)
	}
	for i := 1; i <= b.reps; i++ {
		r := b.agentRun(b.entrypointSpec("warm-reg", name, epDir, false))
		b.progress("warm %d/%d azp-entrypoint (baked, existing registration): %s", i, b.reps, r.summary())
		epReg = append(epReg, r)
	}
	if err := b.e.srv.DeleteAgent(pool, name); err != nil {
		b.progress("delete %s: %v", name, err)
	}
	b.retire(shDir)
	b.retire(epDir)
	return shBaked, epNew, epReg, nil
}

// pick collects one duration of the runs that succeeded.
func pick(runs []agentRun, f func(agentRun) time.Duration) series {
	var s series
	for _, r := range runs {
		if r.err == nil && f(r) > 0 {
			s = append(s, f(r))
		}
	}
	return s
}

func failures(runs []agentRun) int {
	n := 0
	for _, r := range runs {
		if r.err != nil {
			n++
		}
	}
	return n
}

//go:build linux

package main

import (
	"debug/elf"
	"fmt"
	"os"
	"strings"
	"time"
)

type results struct {
	b                        *bench
	pkg                      *pkgStep
	haveCold, haveWarm       bool
	coldSh, coldEp           []agentRun
	warmSh, warmNew, warmReg []agentRun
	prune                    []pruneRun
	errs                     []string
	took                     time.Duration
	fleet                    []fleetRun
	fleetW                   workloadSpec
	fleetTook                time.Duration
}

type row struct{ num, figure, sh, ep, ratio, target, met string }

// verdict for an "under X" target: met by every sample, by the median only, or not.
func under(s series, limit time.Duration, failed int) string {
	switch {
	case len(s) == 0 || failed > 0:
		return "**no** (failed runs)"
	case s.max() < limit:
		return "yes"
	case s.median() < limit:
		return fmt.Sprintf("median only (max %s)", fmtDur(s.max()))
	}
	return "**no**"
}

func atMost(r float64, limit float64, failed int) string {
	if r == 0 || failed > 0 {
		return "**no** (failed runs)"
	}
	return yesNo(r <= limit)
}

func (res *results) markdown() string {
	b := res.b
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }

	p("# Benchmarks: azp-entrypoint against Microsoft's start.sh\n\n")
	p("One run of the benchmark on one machine, against the simulator (`internal/sim`) on loopback, with the fake agent (`internal/sim/fakeagent`) in a package of real agent size. ")
	p("Each cell is the **median (min–max)** of the repetitions; ratios are azp-entrypoint / start.sh (or / the named reference) of the medians. ")
	p("Taken %s, the whole benchmark took %s.\n\n", b.began.UTC().Format("2006-01-02 15:04 MST"), fmtDur(res.took.Round(time.Second)))
	p("| Machine | |\n|---|---|\n")
	for _, kv := range machine() {
		p("| %s | %s |\n", kv[0], kv[1])
	}
	p("| Command | %s |\n", command())
	filler := fmt.Sprintf("%s of generated filler", fmtBytes(b.fillerBytes))
	if b.fillerDir != "" {
		filler = fmt.Sprintf("a copy of `%s` plus %s", b.fillerDir, filler)
	}
	files := ""
	if res.pkg != nil && res.pkg.files > 0 {
		files = fmt.Sprintf(", %d files, %s extracted", res.pkg.files, fmtBytes(res.pkg.extracted))
	}
	if b.pkg.Path != "" {
		p("| Agent package | fake agent %s %s: %s compressed%s (%s) |\n", b.pkg.Version, platform, fmtBytes(b.pkg.Size), files, filler)
	}
	p("| Repetitions | cold runs and package step %d, warm runs %d, prune %d |\n\n", b.coldReps, b.reps, b.pruneReps)

	rows := res.rows()
	p("## Results\n\n| # | Figure | start.sh | azp-entrypoint | ratio | target | met |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		p("| %s | %s | %s | %s | %s | %s | %s |\n", r.num, r.figure, r.sh, r.ep, r.ratio, r.target, r.met)
	}
	p("\n")
	var notMet []string
	for _, r := range rows {
		if strings.Contains(r.met, "no") || strings.HasPrefix(r.met, "median only") {
			notMet = append(notMet, fmt.Sprintf("%s %s: %s", r.num, r.figure, r.met))
		}
	}
	if len(notMet) == 0 {
		p("Every target is met.\n\n")
	} else {
		p("Targets not (fully) met, see the notes of each figure below:\n\n")
		for _, n := range notMet {
			p("- %s\n", n)
		}
		p("\n")
	}
	for _, e := range res.errs {
		p("- error: %s\n", e)
	}
	if res.fleet != nil {
		w.WriteString(fleetMarkdown(res.fleet, res.fleetW, res.fleetTook))
	}
	res.details(&w)
	return w.String()
}

func (res *results) rows() []row {
	var rows []row
	if res.haveCold {
		sh, ep := pick(res.coldSh, func(r agentRun) time.Duration { return r.online }), pick(res.coldEp, func(r agentRun) time.Duration { return r.online })
		rt, rs := ratio(ep, sh)
		rows = append(rows, row{"1", "Time to online, cold (process start → online in the pool)", sh.cell(), ep.cell(), rs, "≤ 0.80", atMost(rt, 0.8, failures(res.coldSh)+failures(res.coldEp))})
	}
	if res.haveWarm {
		sh, ep := pick(res.warmSh, func(r agentRun) time.Duration { return r.online }), pick(res.warmNew, func(r agentRun) time.Duration { return r.online })
		_, rs := ratio(ep, sh)
		rows = append(rows, row{"2", "Time to online, warm: package baked, new registration", sh.cell() + " ¹", ep.cell(), rs, "–", "–"})
		reg := pick(res.warmReg, func(r agentRun) time.Duration { return r.online })
		rows = append(rows, row{"2", "Time to online, warm: package baked, existing registration", "– ²", reg.cell(), "–", "–", "–"})
		own := pick(res.warmNew, func(r agentRun) time.Duration { return r.own })
		rows = append(rows, row{"2", "Entrypoint's own share of warm start, new registration", "–", own.cell(), "–", "< 200 ms", under(own, 200*time.Millisecond, failures(res.warmNew))})
		own = pick(res.warmReg, func(r agentRun) time.Duration { return r.own })
		rows = append(rows, row{"2", "Entrypoint's own share of warm start, existing registration", "–", own.cell(), "–", "< 200 ms", under(own, 200*time.Millisecond, failures(res.warmReg))})
	}
	if res.haveCold || res.haveWarm {
		shRuns := append(append([]agentRun(nil), res.coldSh...), res.warmSh...)
		epRuns := append(append([]agentRun(nil), res.coldEp...), res.warmNew...)
		sh, ep := pick(shRuns, func(r agentRun) time.Duration { return r.leave }), pick(epRuns, func(r agentRun) time.Duration { return r.leave })
		_, rs := ratio(ep, sh)
		rows = append(rows, row{"3", "Time to leave, idle (SIGTERM → deleted from the pool)", sh.cell(), ep.cell(), rs, "< 1 s", under(ep, time.Second, failures(epRuns))})
		sh, ep = pick(shRuns, func(r agentRun) time.Duration { return r.exited }), pick(epRuns, func(r agentRun) time.Duration { return r.exited })
		_, rs = ratio(ep, sh)
		rows = append(rows, row{"3", "SIGTERM → supervising process exited", sh.cell() + " ³", ep.cell(), rs, "–", "–"})
		var shHWM, epCold, epWarm sizes
		for _, r := range shRuns {
			if r.err == nil && r.hwm > 0 {
				shHWM = append(shHWM, r.hwm)
			}
		}
		for _, r := range res.coldEp {
			if r.err == nil && r.hwm > 0 {
				epCold = append(epCold, r.hwm)
			}
		}
		for _, r := range append(append([]agentRun(nil), res.warmNew...), res.warmReg...) {
			if r.err == nil && r.hwm > 0 {
				epWarm = append(epWarm, r.hwm)
			}
		}
		if res.haveCold {
			rows = append(rows, row{"4", "Peak RSS (VmHWM) while supervising, after a cold start (download included)", shHWM.cell() + " ⁴", epCold.cell(), "–", "report", "–"})
		}
		if res.haveWarm {
			rows = append(rows, row{"4", "Peak RSS (VmHWM) while supervising, warm start", "–", epWarm.cell(), "–", "report", "–"})
		}
	}
	rows = append(rows, row{"4", "Binary size", "–", binaryInfo(res.b.ep), "–", "report", "–"})
	if res.prune != nil {
		var took series
		failed, violations, limited, checked, clientWide := 0, 0, 0, 0, 0
		for _, r := range res.prune {
			if r.err != nil {
				failed++
				continue
			}
			took = append(took, r.took)
			violations += r.violations
			limited += r.limited
			checked += r.checked
			clientWide += r.clientWide
		}
		met := yesNo(failed == 0 && violations == 0 && len(took) > 0)
		if failed > 0 {
			met = "**no** (failed runs)"
		}
		rows = append(rows, row{"5", fmt.Sprintf("Prune %d stale of %d agents, 429 + Retry-After", pruneStale, pruneStale+pruneOnline+pruneRecent+pruneOther), "–", took.cell(), "–",
			"no request ignores Retry-After", fmt.Sprintf("%s (%d of %d retries early)", met, violations, checked)})
	}
	if st := res.pkg; st != nil {
		rt, rs := ratio(st.install, st.curlTar)
		rows = append(rows, row{"6", "Package, cold: `curl \\| tar -xz` vs `azp-entrypoint install`", st.curlTar.cell(), st.install.cell(), rs, "≤ 0.80", atMost(rt, 0.8, len(st.errs))})
		if len(st.shmCurlTar) > 0 || len(st.shmInstall) > 0 {
			_, rs := ratio(st.shmInstall, st.shmCurlTar)
			rows = append(rows, row{"6", "Package, cold, on tmpfs (no disk): `curl \\| tar -xz` vs `azp-entrypoint install`", st.shmCurlTar.cell(), st.shmInstall.cell(), rs, "–", "–"})
		}
		rows = append(rows, row{"6", "Peak RSS of the cold `azp-entrypoint install` process (disk; tmpfs)", "–", st.installRSS.cell() + "; " + st.shmInstallRSS.cell(), "–", "≤ 20 MiB", rssVerdict(append(append(sizes(nil), st.installRSS...), st.shmInstallRSS...), 20<<20)})
		rows = append(rows, row{"6", "Package reuse (already installed): agentpkg.Ensure in-process", "–", st.reuseEnsure.cell(), "–", "< 50 ms", under(st.reuseEnsure, 50*time.Millisecond, len(st.errs))})
		rows = append(rows, row{"6", "Package reuse: `azp-entrypoint install` process on an installed dir", "–", st.reuseCmd.cell(), "–", "–", "–"})
		_, ri := ratio(st.install, st.gunzip)
		_, rc := ratio(st.curlTar, st.gunzip)
		rows = append(rows, row{"6", "`gzip -dc` of the same file to /dev/null (lower bound)", "–", st.gunzip.cell(), fmt.Sprintf("install / gzip %s; curl \\| tar / gzip %s", ri, rc), "–", "–"})
		rows = append(rows, row{"6", "`curl -o /dev/null` (the download alone)", "–", st.download.cell(), "–", "–", "–"})
	}
	return rows
}

// rssVerdict: every sample at most limit.
func rssVerdict(s sizes, limit int64) string {
	if len(s) == 0 {
		return "**no** (no sample)"
	}
	for _, v := range s {
		if v > limit {
			return fmt.Sprintf("**no** (max %s)", fmtBytes(v))
		}
	}
	return "yes"
}

// binaryInfo is the size of the binary and whether it is static (no interpreter, no DT_NEEDED).
func binaryInfo(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "unknown"
	}
	kind := "not an ELF file"
	if f, err := elf.Open(path); err == nil {
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
			static = false
		}
		f.Close()
		kind = "dynamic"
		if static {
			kind = "static"
		}
	}
	return fmt.Sprintf("%s (%d bytes, %s, stripped)", fmtBytes(fi.Size()), fi.Size(), kind)
}

func (res *results) details(w *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("¹ start.sh as Microsoft publishes it always downloads; \"baked\" is the variant of derived images that skip steps 1–2 when the package is in the image (`BENCH_BAKED=true`); it still runs `config.sh` every time.  \n")
	p("² start.sh has no way to reuse a registration: it configures (and with `--replace` re-registers) on every start.  \n")
	p("³ start.sh exits once its cleanup (`config.sh remove`) is done, without ever signalling the listener: the listener only ends when its next poll finds the agent deleted, and in a container it would be killed when PID 1 exits (here the benchmark kills whatever is left, by PID, and counts it as a stray).  \n")
	p("⁴ The bash process running start.sh.\n\n")

	p("## How each figure is measured\n\n")
	p("All processes are started by the benchmark with a minimal environment (PATH, HOME, the settings), as root, with `AZP_RUN_AS` unset, each run with its own agent directory, state directory and agent name. ")
	p("The simulator runs inside the benchmark process, served on 127.0.0.1 through a thin wrapper that timestamps every request (arrival, answer written, status, Retry-After). ")
	p("The benchmark is a child subreaper: after every run it kills, by PID, whatever the run left behind, and counts it.\n\n")

	p("**1. Time to online, cold.** From just before fork/exec of the process (bash running bench/start.sh, or azp-entrypoint) until the simulator turns the agent online (its `statusChangedOn`, set when the listener creates its session), with an empty agent directory. ")
	p("Both fetch the package list with the PAT, download the same package from the simulator, register with the PAT and start the same fake listener. The two alternate, run by run.\n\n")
	res.runTable(w, append(append([]agentRun(nil), res.coldSh...), res.coldEp...))

	p("**2. Time to online, warm, and the entrypoint's own share.** The package is installed before the process starts (`azp-entrypoint install` for azp-entrypoint, `curl | tar -xz` for start.sh). ")
	p("*New registration*: no agent configuration in the directory (a new container from a baked image). *Existing registration*: the same agent restarted after a run with `AZP_DEREGISTER=false` (a restarted container with a persistent agent directory), so the entrypoint skips configure and only re-enables the agent. ")
	p("The own share is measured from the entrypoint's JSON log: (time of the `listener started` record − process start) − (the fake agent's configure: `configuring the agent` → `agent registered`) − (the time the simulator spent answering the entrypoint's own requests in that span, from the wrapper's timestamps: handler entry to return). ")
	p("What remains is the entrypoint's own work: exec and Go runtime start, settings, location discovery and JSON handling, the marker check of the installed package, the work directory, starting the configure and listener processes. The listener's own start (OAuth token, session) is the fake agent's work and not included.\n\n")
	res.runTable(w, append(append(append([]agentRun(nil), res.warmSh...), res.warmNew...), res.warmReg...))

	p("**3. Time to leave.** The agent is online and idle (in its message long poll) for %s, then SIGTERM goes to the supervising process (bash for start.sh, as when it is PID 1 with an exec-form ENTRYPOINT, its best case); the time runs until the simulator has deleted the agent. ", fmtDur(settle))
	p("Samples: the cold and the warm new-registration runs. start.sh's trap runs `config.sh remove` while its listener is still connected; azp-entrypoint disables the agent, stops the listener with SIGINT (it closes its session), then deletes the agent.\n\n")

	p("The fake agent's configure and remove are a Go program answering in tens of milliseconds; the real agent's (.NET) take seconds, so start.sh's time to leave, which is a `config.sh remove`, is a lower bound of the real one.\n\n")
	p("**4. Footprint.** VmHWM (peak resident set) from /proc/<pid>/status of the supervising process, read while the agent is online and idle, just before SIGTERM: after a cold start it includes the download and extraction the entrypoint did itself; warm runs show the supervising cost alone. The binary is bin/azp-entrypoint as `make build-native` builds it (CGO_ENABLED=0, -trimpath, -s -w).\n\n")

	if res.prune != nil {
		p("**5. Prune at scale.** A fresh pool per run with %d agents: %d stale ghosts (`%s0`…, offline for 2 h), %d online and %d recently offline (10 min) agents with the same prefix, and %d stale agents with another name. ",
			pruneStale+pruneOnline+pruneRecent+pruneOther, pruneStale, prunePrefix, pruneOnline, pruneRecent, pruneOther)
		p("The simulator rate-limits the agents routes (`%s`, any method) to %d requests per fixed %s window, answering 429 with `Retry-After: <seconds until the window ends, rounded up>` (sim.RateLimit). ", pruneRoute, pruneLimitN, pruneLimitWind)
		p("The time is that of the whole `azp-entrypoint prune --prefix %s --offline-for 1h` process. Afterwards the benchmark checks that exactly the %d stale ghosts are gone and the other %d agents remain. ", prunePrefix, pruneStale, pruneOnline+pruneRecent+pruneOther)
		// The listing counts against the limit too: %d requests need ceil(n/N) windows, and the
		// last one cannot start before (ceil(n/N) - 1) whole windows have passed.
		n := pruneStale + 1
		windows := (n + pruneLimitN - 1) / pruneLimitN
		p("The %d requests (the listing and the deletions) need %d windows, so the rate limit alone makes prune take at least %s.\n\n", n, windows, fmtDur(time.Duration(windows-1)*pruneLimitWind))
		p("*The Retry-After check.* A route is a method and an exact path (e.g. `DELETE …/pools/7/agents/1234`), the request a 429 answered. For every 429 with `Retry-After: N`, the next request on the same route must arrive at least N seconds after the 429 was written (its handler returned); an earlier arrival counts as ignoring Retry-After. Every 429 must have a later request on its route (a retry), else prune gave up. ")
		p("The count of 429s is cross-checked against the simulator's own request log. ")
		p("For information only, the *client-wide* count is the number of requests to those routes (from any of prune's 8 workers) that arrived while some other request's Retry-After was still running. The client pauses all its workers once any request is answered 429 (`internal/azdo` rateGate), so what this counts are the requests already on the wire when the first 429 of a window came back: prune's 8 workers have up to 8 requests in flight.\n\n")
		p("| run | time | deletions | requests | 429 answers | retries checked | early retries | smallest margin | client-wide in a window | result |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for i, r := range res.prune {
			status := "ok"
			if r.err != nil {
				status = "FAILED: " + oneLine(r.err.Error())
			}
			p("| %d | %s | %d | %d | %d | %d | %d | %s | %d | %s |\n", i+1, fmtDur(r.took), r.deleted, r.requests, r.limited, r.checked, r.violations, fmtDur(r.minMargin), r.clientWide, status)
		}
		p("\n")
	}
	if st := res.pkg; st != nil {
		p("**6. Package step.** The package is served by the simulator at `/_sim/download/…` on loopback (from the page cache). Each round, in a rotating order: `bash -c 'set -o pipefail; curl -sS URL | tar -xz'` into an empty directory; ")
		p("`azp-entrypoint install --url URL --sha256 H --version V --platform P --dir D` into an empty directory (download, SHA-256 check, safe extraction into a temporary directory, rename into place, marker); `gzip -dc FILE > /dev/null`; `curl -sS -o /dev/null URL`. ")
		p("The first two write to the benchmark's temporary directory (%s), as a container writes to its own layer; they are repeated on tmpfs (/dev/shm) when available, which takes the disk out of the picture. ", fsName(res.b.tmp))
		p("`sync` runs between operations (not timed), and extracted trees on disk are only deleted when the benchmark ends: on ext4 without a journal the inode allocator skips inodes deleted in the last minutes (`recently_deleted`), and after deleting 12,000 files every later extraction crawls, which a container's first start never pays. ")
		if !res.b.keepTrees {
			p("**In this run the disk was too small to keep them: trees were deleted between runs.** ")
		}
		p("Reuse is timed on the installed directory: `agentpkg.Ensure` in-process with no server (what `azp-entrypoint run` does at start; a nil Lister, so any network use would fail), `agentpkg.Installed` (the marker read), and the `azp-entrypoint install` command again (a process: exec, flags, marker).\n\n")
		p("| operation | samples |\n|---|---|\n")
		p("| curl \\| tar -xz | %s |\n| azp-entrypoint install (cold) | %s |\n| gzip -dc | %s |\n| curl -o /dev/null | %s |\n", st.curlTar.list(), st.install.list(), st.gunzip.list(), st.download.list())
		if len(st.shmCurlTar)+len(st.shmInstall) > 0 {
			p("| curl \\| tar -xz on tmpfs | %s |\n| azp-entrypoint install (cold) on tmpfs | %s |\n", st.shmCurlTar.list(), st.shmInstall.list())
		}
		p("| reuse: agentpkg.Ensure | %s |\n| reuse: agentpkg.Installed | %s |\n| reuse: azp-entrypoint install | %s |\n\n", st.reuseEnsure.list(), st.reuseInstalled.list(), st.reuseCmd.list())
		for _, e := range st.errs {
			p("- error: %s\n", oneLine(e))
		}
		if len(st.errs) > 0 {
			p("\n")
		}
	}
}

// runTable lists every agent run.
func (res *results) runTable(w *strings.Builder, runs []agentRun) {
	if len(runs) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("| run | online | leave | exit (code) | VmHWM | to listener | configure | simulator (requests) | own share | strays killed |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		if r.err != nil {
			p("| %s %s %s | FAILED: %s |||||||||\n", r.who, r.mode, r.name, oneLine(r.err.Error()))
			continue
		}
		dash := func(d time.Duration) string {
			if d == 0 {
				return "–"
			}
			return fmtDur(d)
		}
		sim := "–"
		if r.toListener > 0 {
			sim = fmt.Sprintf("%s (%d)", fmtDur(r.simTime), r.requests)
		}
		own := "–"
		if r.toListener > 0 {
			own = fmtDur(r.own)
		}
		p("| %s %s | %s | %s | %s (%d) | %s | %s | %s | %s | %s | %d |\n", r.who, r.mode, fmtDur(r.online), dash(r.leave), fmtDur(r.exited), r.exitCode, fmtBytes(r.hwm),
			dash(r.toListener), dash(r.configure), sim, own, r.strays)
	}
	p("\n")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ⏎ ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// fsName names the file system dir is on, from /proc/self/mountinfo (the longest mount point
// that contains dir).
func fsName(dir string) string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return dir
	}
	best, kind, opts := "", "", ""
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 6 || len(g) < 3 {
			continue
		}
		mp := f[4]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, kind, opts = mp, g[0], f[5]+","+g[2]
		}
	}
	if best == "" {
		return dir
	}
	return fmt.Sprintf("`%s`, %s on `%s`, options %s", dir, kind, best, opts)
}

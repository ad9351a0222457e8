//go:build linux

// Command bench is `make bench`: in one run on one machine it measures azp-entrypoint side by side
// with Microsoft's start.sh (bench/start.sh, a faithful copy) against the simulator on loopback,
// and writes a Markdown table of medians (min–max) and ratios to stdout and to -out.
//
// Figures: (1) time to online, cold; (2) time to online, warm, and the entrypoint's own share of
// it; (3) time to leave after SIGTERM; (4) footprint; (5) prune at scale under 429 rate limiting,
// with a check that no request ignored Retry-After; (6) the package step (curl | tar against
// `azp-entrypoint install`, the reuse of an installed package, and gzip -dc as the lower bound).
//
// It only uses loopback, starts every process it measures itself, and ends only those (and the
// processes they leave behind, which are re-parented to it as a child subreaper), by PID.
// Performance is measured here and nowhere else: the tests assert behaviour, never timings.
//
// On 2 cores it takes about 4 minutes. Extracted trees are kept until the end (see retire), about
// 8 GB in $TMPDIR with the defaults; with less room they are deleted between runs instead.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

const (
	platform     = "linux-x64"
	agentVersion = "4.260.0"
)

type bench struct {
	e                         *simEnv
	tmp                       string
	ep, simBin, startSh       string
	pkg                       pkgbuild.Result
	fleetPkg                  pkgbuild.Result // a small package for the fleet's many task starts
	pkgURL                    string
	fillerDir                 string
	fillerBytes               int64
	shm                       string // a directory on tmpfs for the package step, or ""
	keepTrees                 bool   // extracted trees stay until the end (see retire)
	reps, coldReps, pruneReps int
	began                     time.Time
	keep                      bool
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

// retire is the end of a run's directory: it stays until the benchmark ends, and the page cache's
// dirty pages are flushed so that one run's writes are not paid for by the next. Deleting the
// trees between runs would distort every later extraction: on ext4 without a journal (this
// machine's root file system, for one) the inode allocator skips inodes deleted in the last
// minutes (ext4 recently_deleted), and after deleting ~12,000 files it crawls. A container's
// first start writes into a fresh layer and never pays that.
func (b *bench) retire(dir string) {
	if !b.keepTrees || b.shm != "" && strings.HasPrefix(dir, b.shm+"/") {
		os.RemoveAll(dir) // tmpfs: memory, and no such allocator
	}
	syscall.Sync()
}

// diskNeeded is the room the kept trees take: every cold run and package-step extraction on disk,
// two baked directories, the package, and a margin.
func (b *bench) diskNeeded(extracted int64) int64 {
	return int64(4*b.coldReps+4)*extracted + 1<<30
}

func main() {
	os.Exit(run())
}

func run() int {
	out := flag.String("out", "", "also write the results (Markdown) to this file")
	binDir := flag.String("bin", "bin", "directory holding azp-entrypoint and azp-sim (make build-native)")
	startSh := flag.String("start-sh", "bench/start.sh", "the start.sh baseline")
	reps := flag.Int("reps", 5, "repetitions of the warm runs")
	coldReps := flag.Int("cold-reps", 5, "repetitions of the cold runs and of the package step")
	pruneReps := flag.Int("prune-reps", 3, "repetitions of the prune")
	fillerBytes := flag.Int64("filler-bytes", 210_000_000, "filler bytes in the fake agent package (half random, half text)")
	fillerDir := flag.String("filler-dir", "", "tree copied into the fake agent package (default: $(go env GOROOT)/src)")
	only := flag.String("only", "", "comma-separated subset: online,warm,prune,package,fleet (default: all)")
	k := flag.Float64("k", 10, "time compression of the fleet workload (1-10)")
	parallel := flag.Int("fleet-parallel", 3, "fleet drivers run side by side (in waves of this many)")
	drivers := flag.String("drivers", "once,keda,fixed,once-standby,persistent", "fleet drivers, comma-separated")
	soak := flag.Bool("soak", false, "run the soak (make soak) instead of the benchmark")
	soakJobs := flag.Int("soak-jobs", 1000, "soak: jobs")
	soakMax := flag.Int("soak-max", 20, "soak: AZP_SCALE_MAX")
	soakJobMin := flag.Duration("soak-job-min", time.Second, "soak: shortest job (the fake agent's job duration)")
	soakJobMax := flag.Duration("soak-job-max", 4*time.Second, "soak: longest job")
	soakSeed := flag.Uint64("soak-seed", 16, "soak: seed of the fault schedule and job durations")
	keep := flag.Bool("keep", false, "keep the temporary directory (task logs) for debugging")
	bursts := flag.Int("fleet-bursts", 3, "fleet workload: bursts (issue 16: 3; fewer only for development)")
	perBurst := flag.Int("fleet-jobs", 40, "fleet workload: jobs per burst (issue 16: 40; fewer only for development)")
	flag.Parse()

	b := &bench{keep: *keep, reps: *reps, coldReps: *coldReps, pruneReps: *pruneReps, began: time.Now(), fillerBytes: *fillerBytes}
	want := func(f string) bool { return *only == "" || strings.Contains(","+*only+",", ","+f+",") }
	if err := b.setup(*binDir, *startSh, *fillerDir, !*soak && (want("online") || want("warm") || want("package"))); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		b.cleanup()
		return 1
	}
	// An interrupted benchmark still ends what it started.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "bench: interrupted; cleaning up")
		b.cleanup()
		os.Exit(130)
	}()

	if *soak {
		code := b.runSoak(soakSpec{Jobs: *soakJobs, Burst: 50, BurstGap: 5 * time.Second, Max: *soakMax,
			JobMin: *soakJobMin, JobMax: *soakJobMax, Seed: *soakSeed}, *out)
		b.cleanup()
		return code
	}

	res := &results{b: b}
	if want("package") {
		b.progress("figure 6: package step (%d rounds)", b.coldReps)
		st := b.packageStep()
		res.pkg = &st
	}
	if want("online") {
		b.progress("figures 1, 3, 4: cold starts (%d each)", b.coldReps)
		res.coldSh, res.coldEp = b.coldRuns()
		res.haveCold = true
	}
	if want("warm") {
		b.progress("figures 2, 3, 4: warm starts (%d each)", b.reps)
		var err error
		res.warmSh, res.warmNew, res.warmReg, err = b.warmRuns()
		if err != nil {
			b.progress("warm runs: %v", err)
			res.errs = append(res.errs, "warm runs: "+err.Error())
		}
		res.haveWarm = true
	}
	if want("prune") {
		b.progress("figure 5: prune %d of %d agents under a rate limit (%d runs)", pruneStale, pruneStale+pruneOnline+pruneRecent+pruneOther, b.pruneReps)
		res.prune = b.pruneRuns()
	}
	if want("fleet") {
		w := defaultWorkload(*k)
		w.Bursts, w.PerBurst = *bursts, *perBurst
		if err := w.validate(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			b.cleanup()
			return 2
		}
		t := time.Now()
		b.progress("fleet: %d drivers side by side, k = %g", len(strings.Split(*drivers, ",")), w.K)
		runs, err := b.fleet(w, strings.Split(*drivers, ","), *parallel)
		if err != nil {
			res.errs = append(res.errs, "fleet: "+err.Error())
		}
		res.fleet, res.fleetW, res.fleetTook = runs, w, time.Since(t)
	}
	res.took = time.Since(b.began)
	md := res.markdown()
	fmt.Print(md)
	code := 0
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			code = 1
		}
	}
	b.cleanup()
	return code
}

func (b *bench) setup(binDir, startSh, fillerDir string, bigPackage bool) error {
	if err := becomeSubreaper(); err != nil {
		return fmt.Errorf("become a child subreaper: %w", err)
	}
	abs := func(p string) (string, error) {
		a, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(a); err != nil {
			return "", fmt.Errorf("%s: %w (run `make bench`, which builds it first)", a, err)
		}
		return a, nil
	}
	var err error
	if b.ep, err = abs(filepath.Join(binDir, "azp-entrypoint")); err != nil {
		return err
	}
	if b.simBin, err = abs(filepath.Join(binDir, "azp-sim")); err != nil {
		return err
	}
	if b.startSh, err = abs(startSh); err != nil {
		return err
	}
	for _, tool := range []string{"bash", "curl", "tar", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed for the start.sh baseline: %w", tool, err)
		}
	}
	if b.tmp, err = os.MkdirTemp("", "azp-bench-"); err != nil {
		return err
	}
	os.Chmod(b.tmp, 0o755)
	os.MkdirAll(filepath.Join(b.tmp, "home"), 0o755)
	b.shm = tmpfsDir()

	if b.e, err = newSimEnv(); err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	b.progress("simulator at %s", b.e.org)

	if !bigPackage {
		return nil
	}
	if fillerDir == "" {
		if o, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
			fillerDir = filepath.Join(strings.TrimSpace(string(o)), "src")
		}
	}
	if _, err := os.Stat(fillerDir); err != nil {
		fillerDir = ""
	}
	b.fillerDir = fillerDir
	b.progress("building the fake agent package (filler tree %q + %s of filler)", fillerDir, fmtBytes(b.fillerBytes))
	t := time.Now()
	b.pkg, err = pkgbuild.Build(pkgbuild.Options{Version: agentVersion, Platform: platform, AgentBinary: b.simBin,
		OutDir: filepath.Join(b.tmp, "packages"), FillerDir: fillerDir, FillerBytes: b.fillerBytes})
	if err != nil {
		return fmt.Errorf("build the fake agent package: %w", err)
	}
	b.progress("package: %s, %s, built in %s", b.pkg.Filename, fmtBytes(b.pkg.Size), fmtDur(time.Since(t)))
	if err := b.e.srv.AddPackage(sim.PackageSpec{Version: b.pkg.Version, Platform: platform, FilePath: b.pkg.Path}); err != nil {
		return err
	}
	b.pkgURL = b.e.base + "/_sim/download/" + b.pkg.Filename
	// The package extracts to about 2.4 times its compressed size.
	need := b.diskNeeded(b.pkg.Size * 12 / 5)
	var st unix.Statfs_t
	if err := unix.Statfs(b.tmp, &st); err == nil && int64(st.Bavail)*st.Bsize >= need {
		b.keepTrees = true
	} else {
		b.progress("less than %s free in %s: extracted trees are deleted between runs, which slows later extractions on some file systems", fmtBytes(need), b.tmp)
	}
	return nil
}

func (b *bench) cleanup() {
	if n := killStrays(); n > 0 {
		fmt.Fprintf(os.Stderr, "bench: killed %d leftover processes\n", n)
	}
	if b.e != nil {
		b.e.close()
	}
	if b.keep {
		fmt.Fprintln(os.Stderr, "bench: kept", b.tmp)
		return
	}
	for _, d := range []string{b.tmp, b.shm} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
}

// machine describes where the figures were taken.
func machine() [][2]string {
	cpu := "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown"
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	nproc := fmt.Sprint(runtime.NumCPU())
	if o, err := exec.Command("nproc").Output(); err == nil {
		nproc = strings.TrimSpace(string(o))
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		if line, _, ok := strings.Cut(string(data), "\n"); ok {
			if f := strings.Fields(strings.TrimPrefix(line, "MemTotal:")); len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					mem = fmtBytes(kb * 1024)
				}
			}
		}
	}
	return [][2]string{{"nproc", nproc}, {"CPU", cpu}, {"Memory", mem}, {"Kernel", kernel}, {"Go", runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}}
}

func command() string {
	args := "go run ./bench " + strings.Join(os.Args[1:], " ")
	if os.Getenv("MAKELEVEL") != "" {
		return "`make bench` (" + strings.TrimSpace(args) + ")"
	}
	return "`" + strings.TrimSpace(args) + "`"
}

// tmpfsDir is a new directory on /dev/shm when it is a tmpfs with room for two extracted
// packages, else "".
func tmpfsDir() string {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC || int64(st.Bavail)*st.Bsize < 2<<30 {
		return ""
	}
	d, err := os.MkdirTemp("/dev/shm", "azp-bench-")
	if err != nil {
		return ""
	}
	return d
}

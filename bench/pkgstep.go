//go:build linux

package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
)

// pkgStep is figure 6.
type pkgStep struct {
	curlTar, install                      series // cold, into an empty directory on the benchmark's temp dir (disk)
	shmCurlTar, shmInstall                series // the same on tmpfs, when /dev/shm is one
	gunzip, download                      series
	reuseCmd, reuseEnsure, reuseInstalled series // package already installed
	errs                                  []string
	installRSS, shmInstallRSS             sizes // peak RSS of the cold `azp-entrypoint install` process
	files                                 int   // regular files in the extracted package
	extracted                             int64 // their total size
}

func (b *bench) installArgv(dir string) []string {
	return []string{b.ep, "install", "--url", b.pkgURL, "--sha256", b.pkg.SHA256, "--version", b.pkg.Version, "--platform", platform, "--dir", dir}
}

// packageStep times, in the same run and rotating their order, the start.sh way of installing
// the package (curl | tar -xz), `azp-entrypoint install` into an empty directory, and gzip -dc of
// the same file (the lower bound for one gzip stream); then the reuse of an installed package.
func (b *bench) packageStep() pkgStep {
	var st pkgStep
	type op struct {
		name string
		run  func(i int) (time.Duration, error)
		into *series
	}
	curlTar := func(root, tag string) func(int) (time.Duration, error) {
		return func(i int) (time.Duration, error) {
			dir := filepath.Join(root, "pkg", fmt.Sprintf("curltar-%s%d", tag, i))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return 0, err
			}
			// pipefail only makes a failure visible here; start.sh itself has none.
			d, _, err := runProc("curl | tar -xz", dir, b.baseEnv(), 5*time.Minute, "bash", "-c", `set -o pipefail; curl -sS "$1" | tar -xz`, "curltar", b.pkgURL)
			if err == nil && st.files == 0 {
				st.files, st.extracted = countTree(dir)
			}
			b.retire(dir)
			return d, err
		}
	}
	install := func(root, tag string) func(int) (time.Duration, error) {
		return func(i int) (time.Duration, error) {
			dir := filepath.Join(root, "pkg", fmt.Sprintf("install-%s%d", tag, i))
			d, p, err := runProc("azp-entrypoint install", b.tmp, b.baseEnv("AZP_LOG_FORMAT=json"), 5*time.Minute, b.installArgv(dir)...)
			if err == nil && p.maxRSS > 0 {
				if tag == "" {
					st.installRSS = append(st.installRSS, p.maxRSS)
				} else {
					st.shmInstallRSS = append(st.shmInstallRSS, p.maxRSS)
				}
			}
			if err == nil {
				if _, ok := agentpkg.Installed(dir); !ok {
					err = fmt.Errorf("exit 0 but no package marker in %s", dir)
				}
			}
			if err == nil && tag == "" {
				b.reuse(&st, dir)
			}
			b.retire(dir)
			return d, err
		}
	}
	ops := []op{
		{"curl | tar -xz", curlTar(b.tmp, ""), &st.curlTar},
		{"azp-entrypoint install (cold)", install(b.tmp, ""), &st.install},
		{"gzip -dc > /dev/null", func(int) (time.Duration, error) {
			d, _, err := runProc("gzip -dc", b.tmp, b.baseEnv(), 5*time.Minute, "bash", "-c", `gzip -dc "$1" >/dev/null`, "gzip", b.pkg.Path)
			return d, err
		}, &st.gunzip},
		{"curl -o /dev/null", func(int) (time.Duration, error) {
			d, _, err := runProc("curl -o /dev/null", b.tmp, b.baseEnv(), 5*time.Minute, "curl", "-sS", "-o", "/dev/null", b.pkgURL)
			return d, err
		}, &st.download},
	}
	if b.shm != "" {
		ops = append(ops,
			op{"curl | tar -xz on tmpfs", curlTar(b.shm, "shm-"), &st.shmCurlTar},
			op{"azp-entrypoint install (cold) on tmpfs", install(b.shm, "shm-"), &st.shmInstall})
	}
	for i := 0; i < b.coldReps; i++ {
		for k := range ops {
			o := ops[(i+k)%len(ops)] // rotate the order from one round to the next
			d, err := o.run(i)
			if err != nil {
				st.errs = append(st.errs, fmt.Sprintf("%s: %v", o.name, err))
				b.progress("  %s: FAILED: %v", o.name, err)
				continue
			}
			*o.into = append(*o.into, d)
			b.progress("package %d/%d %s: %s", i+1, b.coldReps, o.name, fmtDur(d))
		}
	}
	return st
}

// reuse times the "already installed" path on an installed directory, three ways: the CLI (a
// process: exec, flag parsing, marker check), agentpkg.Ensure in-process with no server (what
// `azp-entrypoint run` does at start), and agentpkg.Installed alone (the marker read).
func (b *bench) reuse(st *pkgStep, dir string) {
	for range 3 {
		d, p, err := runProc("azp-entrypoint install (installed)", b.tmp, b.baseEnv("AZP_LOG_FORMAT=json"), time.Minute, b.installArgv(dir)...)
		if err != nil {
			st.errs = append(st.errs, "reuse via the CLI: "+err.Error())
			break
		}
		if _, ok := firstRecord(records(p.out.String()), "agent package already installed"); !ok {
			st.errs = append(st.errs, "reuse via the CLI: no \"agent package already installed\" record:\n"+p.tail(5))
			break
		}
		st.reuseCmd = append(st.reuseCmd, d)
	}
	o := agentpkg.Options{Dir: dir, Platform: platform, UID: -1, GID: -1, Logger: slog.New(slog.DiscardHandler)}
	for range 5 {
		t := time.Now()
		m, err := agentpkg.Ensure(context.Background(), o, nil) // nil Lister: any network use would fail
		d := time.Since(t)
		if err != nil || m.Version != b.pkg.Version {
			st.errs = append(st.errs, fmt.Sprintf("reuse via agentpkg.Ensure: version %q, %v", m.Version, err))
			break
		}
		st.reuseEnsure = append(st.reuseEnsure, d)
		t = time.Now()
		_, ok := agentpkg.Installed(dir)
		d = time.Since(t)
		if ok {
			st.reuseInstalled = append(st.reuseInstalled, d)
		}
	}
}

// countTree counts the regular files under dir and their total size.
func countTree(dir string) (int, int64) {
	n, size := 0, int64(0)
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n++
				size += fi.Size()
			}
		}
		return nil
	})
	return n, size
}

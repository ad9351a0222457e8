package agentpkg

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestInstallExtractsPackage(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("vsts-agent-linux-x64-4.261.0.tar.gz", pkg)
	dir := filepath.Join(t.TempDir(), "agent")
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	// Hashes compare ignoring case and dashes, like the agent's own check.
	upper := strings.ToUpper(sha(pkg))
	m, err := Install(context.Background(), o, url, upper[:8]+"-"+upper[8:])
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != sha(pkg) || m.Version != "4.261.0" || m.Current != "4.261.0" || m.InstalledAt.IsZero() {
		t.Errorf("marker %+v", m)
	}
	assertInstalled(t, dir, "4.261.0")
	modes := map[string]fs.FileMode{
		"bin":                           fs.ModeDir | 0o755,
		"bin/Agent.Listener":            0o755,
		"bin/en-US/strings.json":        0o644,
		"bin/libcoreclr.so":             0o644,
		"config.sh":                     0o755,
		"externals/private":             fs.ModeDir | 0o700,
		"externals/private/secret.txt":  0o600,
		"externals/node/bin/npm":        fs.ModeSymlink | 0o777,
		"externals/node/lib/npm-cli.js": 0o644,
	}
	for p, want := range modes {
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if got := fi.Mode() & (fs.ModeType | fs.ModePerm); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
	if target, _ := os.Readlink(filepath.Join(dir, "externals/node/bin/npm")); target != "../lib/npm-cli.js" {
		t.Errorf("symlink target %q", target)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "externals/node/bin/npm")); err != nil || string(b) != "js" {
		t.Errorf("symlink does not resolve: %q %v", b, err)
	}
	a, _ := os.Stat(filepath.Join(dir, "bin/Agent.Worker"))
	b, _ := os.Stat(filepath.Join(dir, "bin/Agent.Worker2"))
	if !os.SameFile(a, b) {
		t.Error("hard link was not kept")
	}
	big, _ := os.ReadFile(filepath.Join(dir, "bin/libcoreclr.so"))
	if len(big) != smallFile+12345 {
		t.Errorf("big file has %d bytes", len(big))
	}
	if r := s.requests(); len(r) != 1 || r[0].Header.Get("Accept-Encoding") != "identity" {
		t.Errorf("requests %d, Accept-Encoding %q", len(r), r[0].Header.Get("Accept-Encoding"))
	}
}

func TestInstallWithoutHashLogsAndStaysAtomic(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	dir := t.TempDir()
	o, rec := testOptions(t, dir)
	o.Version = "4.261.0"
	m, err := Install(context.Background(), o, url, "")
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != sha(pkg) {
		t.Errorf("marker records %s, want the computed %s", m.SHA256, sha(pkg))
	}
	if len(rec.find("no --sha256 given: the package's integrity is not verified")) != 1 {
		t.Error("no warning about the missing hash")
	}
	assertInstalled(t, dir, "4.261.0")

	// Same version again: kept, no download.
	s.set(func(s *server) { s.noHit = true })
	if _, err := Install(context.Background(), o, url, ""); err != nil {
		t.Fatal(err)
	}
}

func TestInstallDefaultsToPublicURL(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	s.add("agent/4.261.0/vsts-agent-linux-x64-4.261.0.tar.gz", pkg)
	old := publicBase
	publicBase = s.srv.URL + "/agent/"
	t.Cleanup(func() { publicBase = old })
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	if _, err := Install(context.Background(), o, "", sha(pkg)); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, dir, "4.261.0")
}

func TestInstallBadInput(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	_, err := Install(context.Background(), o, "http://127.0.0.1:1/x", "")
	assertCode(t, err, 2, "--version")
	o.Version = "4.261.0"
	o.Platform = "win-x64"
	_, err = Install(context.Background(), o, "http://127.0.0.1:1/x", "")
	assertCode(t, err, 2, "win-x64", "AZP_AGENT_PLATFORM")
	o.Platform = "linux-x64"
	_, err = Install(context.Background(), o, "http://127.0.0.1:1/x", "abc")
	assertCode(t, err, 2, "--sha256")
	o.Version = "../4"
	_, err = Install(context.Background(), o, "http://127.0.0.1:1/x", "")
	assertCode(t, err, 2, "AZP_AGENT_VERSION")
	assertNoPackage(t, dir)
}

func TestInstall404IsConfigError(t *testing.T) {
	s := newServer(t)
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "9.9.9"
	_, err := Install(context.Background(), o, s.srv.URL+"/nope.tar.gz", "")
	assertCode(t, err, 2, "9.9.9", s.srv.URL+"/nope.tar.gz", "404")
	assertNoPackage(t, dir)
	if n := len(s.requests()); n != 1 {
		t.Errorf("%d requests; a 404 is not retried", n)
	}
}

func TestHashMismatchLeavesNothing(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	_, err := Install(context.Background(), o, url, sha([]byte("something else")))
	assertCode(t, err, 1, "4.261.0", url, "SHA-256")
	if !errors.Is(err, ErrHashMismatch) {
		t.Errorf("not ErrHashMismatch: %v", err)
	}
	assertNoPackage(t, dir)
}

func TestResumeAfterDroppedConnection(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	const cut = 100_000
	if len(pkg) < 2*cut {
		t.Fatalf("package too small: %d", len(pkg))
	}
	s.set(func(s *server) { s.dropOnce = cut })
	dir := t.TempDir()
	o, rec := testOptions(t, dir)
	o.Version = "4.261.0"
	if _, err := Install(context.Background(), o, url, sha(pkg)); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, dir, "4.261.0")
	r := s.requests()
	if len(r) != 2 {
		t.Fatalf("%d requests, want 2", len(r))
	}
	if got := r[1].Header.Get("Range"); got != "bytes=100000-" {
		t.Errorf("resume sent Range %q, want bytes=100000-", got)
	}
	if r[1].Header.Get("If-Range") == "" {
		t.Error("resume sent no If-Range: a changed file could be spliced onto the old bytes")
	}
	if len(rec.find("resuming agent package download")) != 1 {
		t.Error("resume not logged")
	}
}

func TestResumeAfterStall(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	s.set(func(s *server) { s.stallAt = 50_000 })
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	o.StallTimeout = 300 * time.Millisecond
	if _, err := Install(context.Background(), o, url, sha(pkg)); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, dir, "4.261.0")
	r := s.requests()
	if len(r) != 2 || r[1].Header.Get("Range") != "bytes=50000-" {
		t.Errorf("%d requests, last Range %q", len(r), r[len(r)-1].Header.Get("Range"))
	}
}

func TestResumeWithoutValidatorSkipsReceivedBytes(t *testing.T) {
	// A server without ETag/Last-Modified that also ignores Range still works: the bytes already
	// received are skipped; the hash proves the result.
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	s.set(func(s *server) { s.noETag = true })
	url := s.add("p.tar.gz", pkg)
	s.set(func(s *server) { s.dropOnce = 70_000 })
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	if _, err := Install(context.Background(), o, url, sha(pkg)); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, dir, "4.261.0")
}

func TestTruncatedDownloadGivesUp(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	s.set(func(s *server) { s.dropAt = 60_000 }) // every response ends there: no progress after the first
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	_, err := Install(context.Background(), o, url, sha(pkg))
	assertCode(t, err, 1, "4.261.0", url, "gave up after 4 attempts, 60000 of")
	assertNoPackage(t, dir)
	if n := len(s.requests()); n != 1+o.Retries {
		t.Errorf("%d requests, want %d", n, 1+o.Retries)
	}
}

func TestTruncatedFileIsRejected(t *testing.T) {
	// The server's file itself is short (consistent Content-Length): gzip sees the end missing.
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg[:len(pkg)/2])
	for _, hash := range []string{"", sha(pkg)} {
		dir := t.TempDir()
		o, _ := testOptions(t, dir)
		o.Version = "4.261.0"
		_, err := Install(context.Background(), o, url, hash)
		assertCode(t, err, 1, "4.261.0", url)
		assertNoPackage(t, dir)
	}
}

func TestServerErrorsAreRetried(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	// Nothing listens there: connection refused, retried, then a runtime error naming the URL.
	url := "http://127.0.0.1:1/p.tar.gz"
	start := time.Now()
	_, err := Install(context.Background(), o, url, "")
	assertCode(t, err, 1, url, "4 attempts")
	if time.Since(start) > 5*time.Second {
		t.Error("retries took too long")
	}
	assertNoPackage(t, dir)
}

func TestCancelAbortsDownloadPromptly(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	s.set(func(s *server) { s.stallAt = 30_000 })
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(s.requests()) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err := Install(ctx, o, url, "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// The contract: a stop during the download ends within 5 s.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v, want within the contract's 5 s", d)
	}
	assertNoPackage(t, dir)
}

func TestProgressIsReported(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	s.set(func(s *server) { s.throttle = 3 * time.Millisecond }) // ~16 KiB per write: a few hundred ms in all
	dir := t.TempDir()
	o, rec := testOptions(t, dir)
	o.Version = "4.261.0"
	o.ProgressInterval = 30 * time.Millisecond
	var bar bytes.Buffer
	o.Progress = &bar
	if _, err := Install(context.Background(), o, url, sha(pkg)); err != nil {
		t.Fatal(err)
	}
	recs := rec.find("downloading agent package")
	var withPercent int
	for _, r := range recs {
		if _, ok := r["percent"]; ok {
			withPercent++
			if r["total"] != int64(len(pkg)) || r["rate"] == nil || r["bytes"] == nil {
				t.Errorf("progress record %v", r)
			}
		}
	}
	if withPercent == 0 {
		t.Errorf("no progress records with percent among %v", recs)
	}
	if !strings.Contains(bar.String(), "\r[") || !strings.Contains(bar.String(), "100%") {
		t.Errorf("progress bar %q", bar.String())
	}
}

func TestReplacesOlderPackageKeepingAgentFiles(t *testing.T) {
	s := newServer(t)
	old := buildTarGz(t, append(agentEntries("4.250.0"), file("./old-only.txt", "x", 0o644)))
	nw := buildTarGz(t, agentEntries("4.261.0"))
	oldURL := s.add("old.tar.gz", old)
	newURL := s.add("new.tar.gz", nw)
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.250.0"
	if _, err := Install(context.Background(), o, oldURL, sha(old)); err != nil {
		t.Fatal(err)
	}
	// What the agent writes later must survive a package replacement.
	os.WriteFile(filepath.Join(dir, ".agent"), []byte("{}"), 0o600)
	os.MkdirAll(filepath.Join(dir, "_work", "1"), 0o755)
	// A leftover of an interrupted install is cleaned up.
	os.MkdirAll(filepath.Join(dir, ".pkg-4.1.0.tmp-123", "new", "bin"), 0o755)

	o.Version = "4.261.0"
	if _, err := Install(context.Background(), o, newURL, sha(nw)); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, dir, "4.261.0")
	for _, p := range []string{".agent", "_work/1", "old-only.txt"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s lost: %v", p, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "bin/Agent.Listener")); !strings.Contains(string(b), "4.261.0") {
		t.Errorf("bin not replaced: %q", b)
	}
}

func TestFailedReplacementIsNotComplete(t *testing.T) {
	// A bad new package must not leave the old marker standing over a mix of old and new files;
	// here it fails before anything moves, so the old package stays intact and installed.
	s := newServer(t)
	old := buildTarGz(t, agentEntries("4.250.0"))
	oldURL := s.add("old.tar.gz", old)
	badURL := s.add("bad.tar.gz", buildTarGz(t, []entry{file("./bin/x", "x", 0o644), file("../evil", "x", 0o644)}))
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.250.0"
	if _, err := Install(context.Background(), o, oldURL, ""); err != nil {
		t.Fatal(err)
	}
	o.Version = "4.261.0"
	_, err := Install(context.Background(), o, badURL, "")
	assertCode(t, err, 1, "4.261.0")
	assertInstalled(t, dir, "4.250.0")
}

func TestInstalledReportsSelfUpdatedVersion(t *testing.T) {
	dir := t.TempDir()
	if err := writeMarker(dir, Marker{Version: "4.250.0", Platform: "linux-x64"}, owner{}); err != nil {
		t.Fatal(err)
	}
	m, ok := Installed(dir)
	if !ok || m.Current != "4.250.0" {
		t.Fatalf("%+v %v", m, ok)
	}
	os.Mkdir(filepath.Join(dir, "bin.4.261.0"), 0o755)
	os.Symlink("bin.4.261.0", filepath.Join(dir, "bin"))
	m, ok = Installed(dir)
	if !ok || m.Version != "4.250.0" || m.Current != "4.261.0" {
		t.Fatalf("%+v %v", m, ok)
	}
	// The pin compares with the version the agent updated itself to.
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	if _, err := Ensure(context.Background(), o, failLister{t}); err != nil {
		t.Fatal(err)
	}
	// A marker that is not valid JSON or lacks a version is no marker.
	os.WriteFile(filepath.Join(dir, MarkerFile), []byte(`{"version":""}`), 0o644)
	if _, ok := Installed(dir); ok {
		t.Error("empty version taken as installed")
	}
	os.WriteFile(filepath.Join(dir, MarkerFile), []byte(`{"vers`), 0o644)
	if _, ok := Installed(dir); ok {
		t.Error("torn marker taken as installed")
	}
}

func TestFileChangedDuringResumeIsNotSpliced(t *testing.T) {
	a := buildTarGz(t, agentEntries("4.261.0"))
	b := buildTarGz(t, agentEntries("4.262.0"))
	var n int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first {
			w.Header().Set("ETag", `"a"`)
			lw := &limitWriter{ResponseWriter: w, limit: 50_000, stall: -1, ctx: r.Context()}
			http.ServeContent(lw, r, "p", time.Time{}, bytes.NewReader(a))
			return
		}
		w.Header().Set("ETag", `"b"`) // If-Range "a" no longer matches: the whole new file comes back
		http.ServeContent(w, r, "p", time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	_, err := Install(context.Background(), o, srv.URL+"/p", "")
	assertCode(t, err, 1, "changed on the server")
	assertNoPackage(t, dir)
}

func TestAuthorizeAndAuthFailures(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	s.set(func(s *server) { s.dropOnce = 80_000 })
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	o.Authorize = func(r *http.Request) { r.SetBasicAuth("", "mirror-token") }
	if _, err := Install(context.Background(), o, url, sha(pkg)); err != nil {
		t.Fatal(err)
	}
	for i, r := range s.requests() {
		if _, p, _ := r.BasicAuth(); p != "mirror-token" {
			t.Errorf("request %d without the mirror's credentials", i)
		}
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "denied", http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	dir = t.TempDir()
	o.Dir = dir
	_, err := Install(context.Background(), o, srv.URL+"/p", "")
	assertCode(t, err, 3, "401", srv.URL+"/p")
	assertNoPackage(t, dir)
}

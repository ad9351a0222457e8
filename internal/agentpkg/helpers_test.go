package agentpkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// entry is one tar entry of a test package.
type entry struct {
	name string
	typ  byte
	mode int64
	body string
	link string
}

func file(name, body string, mode int64) entry {
	return entry{name: name, typ: tar.TypeReg, mode: mode, body: body}
}
func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) entry {
	return entry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func hardlink(name, target string) entry { return entry{name: name, typ: tar.TypeLink, link: target} }

// agentEntries look like a real agent package: "./"-prefixed names, exec modes, a relative
// symlink inside the root, a hard link, a directory with a restrictive mode, a file above the
// in-memory threshold so the streaming path runs too.
func agentEntries(version string) []entry {
	big := make([]byte, smallFile+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.IntN(16)) // compressible, but not trivially
	}
	return []entry{
		dir("./"),
		dir("./bin/"),
		file("./bin/Agent.Listener", "#!/bin/sh\necho listener "+version+"\n", 0o755),
		file("./bin/Agent.Listener.deps.json", depsJSON(version, "linux-x64"), 0o644),
		file("./bin/Agent.Worker", "#!/bin/sh\necho worker\n", 0o755),
		file("./bin/en-US/strings.json", `{"x":"y"}`, 0o644),
		file("./bin/libcoreclr.so", string(big), 0o644),
		hardlink("./bin/Agent.Worker2", "./bin/Agent.Worker"),
		file("./config.sh", "#!/bin/bash\n", 0o755),
		file("./run.sh", "#!/bin/bash\n", 0o755),
		file("./env.sh", "#!/bin/bash\n", 0o755),
		file("./license.html", "<html>"+version+"</html>", 0o644),
		dir("./externals/"),
		dir("./externals/node/"),
		dir("./externals/node/lib/"),
		file("./externals/node/lib/npm-cli.js", "js", 0o644),
		dir("./externals/node/bin/"),
		symlink("./externals/node/bin/npm", "../lib/npm-cli.js"),
		{name: "./externals/private/", typ: tar.TypeDir, mode: 0o700},
		file("./externals/private/secret.txt", "x", 0o600),
	}
}

// depsJSON is the part of a published bin/Agent.Listener.deps.json that names the version and
// runtime identifier (src/dir.proj publishes with Version=$(AgentVersion)).
func depsJSON(version, rid string) string {
	return `{
  "runtimeTarget": {"name": ".NETCoreApp,Version=v8.0/` + rid + `", "signature": ""},
  "compilationOptions": {},
  "targets": {".NETCoreApp,Version=v8.0": {}, ".NETCoreApp,Version=v8.0/` + rid + `": {"Agent.Listener/` + version + `": {"runtime": {"Agent.Listener.dll": {}}}}},
  "libraries": {"Agent.Listener/` + version + `": {"type": "project", "serviceable": false, "sha512": ""}}
}
`
}

func buildTarGz(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Uid: 1001, Gid: 1001}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// server is a loopback download server with Range support (http.ServeContent) and faults.
type server struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	files    map[string][]byte
	reqs     []*http.Request
	hits     int // GETs answered with a body
	dropOnce int64
	dropAt   int64         // every response stops at this file offset
	throttle time.Duration // sleep after each write
	stallAt  int64         // once: stop sending at this offset and wait for the client to go
	noHit    bool          // any request fails the test
	noETag   bool
}

func newServer(t testing.TB) *server {
	s := &server{t: t, files: map[string][]byte{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *server) add(name string, b []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files["/"+name] = b
	return s.srv.URL + "/" + name
}

func (s *server) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

func (s *server) hitCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

func (s *server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	body, ok := s.files[r.URL.Path]
	noHit, noETag, throttle := s.noHit, s.noETag, s.throttle
	limit := int64(-1)
	start := int64(0)
	if rg := r.Header.Get("Range"); rg != "" {
		start, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"), 10, 64)
	}
	if s.dropOnce > 0 {
		limit, s.dropOnce = s.dropOnce-start, 0
	} else if s.dropAt > 0 {
		limit = s.dropAt - start
	}
	stall := int64(-1)
	if s.stallAt > 0 {
		stall, s.stallAt = s.stallAt-start, 0
	}
	if ok {
		s.hits++
	}
	s.mu.Unlock()
	if noHit {
		s.t.Errorf("unexpected request %s %s: the package should have been used without network", r.Method, r.URL)
		http.Error(w, "no", http.StatusTeapot)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	if limit == 0 {
		panic(http.ErrAbortHandler)
	}
	if !noETag {
		w.Header().Set("ETag", `"`+sha(body)[:16]+`"`)
	}
	lw := &limitWriter{ResponseWriter: w, limit: limit, stall: stall, throttle: throttle, ctx: r.Context()}
	http.ServeContent(lw, r, "pkg.tar.gz", time.Time{}, bytes.NewReader(body))
}

// limitWriter cuts the connection after limit body bytes, or stalls after stall bytes.
type limitWriter struct {
	http.ResponseWriter
	limit, stall, n int64
	throttle        time.Duration
	ctx             context.Context
}

func (w *limitWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		chunk := p[:min(len(p), 16<<10)]
		cut := w.limit >= 0 && w.n+int64(len(chunk)) >= w.limit
		if cut {
			chunk = chunk[:w.limit-w.n]
		}
		stall := w.stall >= 0 && w.n+int64(len(chunk)) >= w.stall
		if stall {
			chunk = chunk[:w.stall-w.n]
		}
		m, err := w.ResponseWriter.Write(chunk)
		w.n += int64(m)
		p = p[m:]
		if err != nil {
			return 0, err
		}
		w.ResponseWriter.(http.Flusher).Flush()
		if cut {
			time.Sleep(20 * time.Millisecond) // let the client read what was sent
			panic(http.ErrAbortHandler)
		}
		if stall {
			<-w.ctx.Done()
			panic(http.ErrAbortHandler)
		}
		if w.throttle > 0 {
			time.Sleep(w.throttle)
		}
	}
	return total, nil
}

// records captures log records for assertions.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) find(msg string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]any
	for _, rec := range r.recs {
		if rec.Message != msg {
			continue
		}
		m := map[string]any{}
		rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
		out = append(out, m)
	}
	return out
}

func testOptions(t testing.TB, dir string) (Options, *records) {
	rec := &records{}
	return Options{
		Dir: dir, Platform: "linux-x64", UID: -1, GID: -1, Logger: slog.New(rec),
		Retries: 3, RetryDelay: 10 * time.Millisecond, StallTimeout: 5 * time.Second,
	}, rec
}

// assertNoPackage: no marker, no temporary files, and nothing extracted in dir.
func assertNoPackage(t testing.TB, dir string) {
	t.Helper()
	if m, ok := Installed(dir); ok {
		t.Errorf("%s looks installed after a failure: %+v", dir, m)
	}
	assertNoTemp(t, dir)
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %v after a failed install into an empty directory", dir, names)
	}
}

func assertNoTemp(t testing.TB, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && (strings.Contains(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".pkg-")) {
				t.Errorf("temporary file left behind: %s", p)
			}
			return nil
		})
	}
}

func assertCode(t testing.TB, err error, code int, mentions ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want exit code %d", code)
	}
	t.Logf("error (exit %d): %v", exit.Code(err), err)
	if got := exit.Code(err); got != code {
		t.Errorf("exit code %d, want %d (error: %v)", got, code, err)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

func assertInstalled(t testing.TB, dir, version string) Marker {
	t.Helper()
	m, ok := Installed(dir)
	if !ok {
		t.Fatalf("no package marker in %s", dir)
	}
	if m.Version != version || m.Platform != "linux-x64" {
		t.Errorf("marker %+v, want version %s linux-x64", m, version)
	}
	b, err := os.ReadFile(filepath.Join(dir, "license.html"))
	if err != nil || string(b) != "<html>"+version+"</html>" {
		t.Errorf("license.html = %q, %v; want version %s", b, err, version)
	}
	assertNoTemp(t, dir)
	return m
}

// fakeLister serves a package list; calls records the top values asked for.
type fakeLister struct {
	pkgs  []Package
	err   error
	calls []int
	mu    sync.Mutex
}

func (l *fakeLister) Packages(_ context.Context, platform string, top int) ([]Package, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, top)
	return l.pkgs, l.err
}

type failLister struct{ t testing.TB }

func (l failLister) Packages(context.Context, string, int) ([]Package, error) {
	l.t.Error("the server was asked for packages although one is installed")
	return nil, errors.New("no")
}

// set changes the server's behaviour under its lock (handlers run on other goroutines).
func (s *server) set(f func(*server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

//go:build linux

package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// simEnv is the simulator, served on loopback by the benchmark's own http.Server so that every
// wire request can be timed and its Retry-After header seen (wireRec). The simulator's own request
// log (sim.Server.RequestLog) is kept too and used as a cross-check.
type simEnv struct {
	srv   *sim.Server
	hs    *http.Server
	base  string // http://127.0.0.1:PORT
	org   string // base + "/sim"
	token string

	mu   sync.Mutex
	recs []wireRec
}

// wireRec is one request as the benchmark's wrapper saw it.
type wireRec struct {
	Method, Path string
	Start, End   time.Time // handler entry and return (the answer is written by End)
	Status       int
	RetryAfter   string
}

func newSimEnv() (*simEnv, error) {
	s := sim.New(sim.Options{})
	e := &simEnv{srv: s, token: "bench" + randHex(16)}
	if err := s.AddToken(e.token, sim.ScopeManage); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := s.Handler()
	e.hs = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := &recWriter{ResponseWriter: w}
			start := time.Now()
			h.ServeHTTP(rw, r)
			end := time.Now()
			if rw.status == 0 {
				rw.status = http.StatusOK
			}
			if p := r.URL.Path; strings.HasPrefix(p, "/_sim/") && p != "/_sim/oauth2/token" && !strings.HasPrefix(p, "/_sim/download/") {
				return // control calls are not wire traffic
			}
			e.mu.Lock()
			e.recs = append(e.recs, wireRec{Method: r.Method, Path: r.URL.Path, Start: start, End: end, Status: rw.status, RetryAfter: rw.Header().Get("Retry-After")})
			e.mu.Unlock()
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go e.hs.Serve(ln)
	e.base = "http://" + ln.Addr().String()
	e.org = e.base + "/sim"
	return e, nil
}

func (e *simEnv) close() { e.hs.Close() }

// resetLog forgets the wire requests seen so far (both logs).
func (e *simEnv) resetLog() {
	e.mu.Lock()
	e.recs = nil
	e.mu.Unlock()
	e.srv.ResetRequestLog()
}

func (e *simEnv) log() []wireRec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]wireRec(nil), e.recs...)
}

// recWriter notes the status and passes everything else through (streaming, hijacking).
type recWriter struct {
	http.ResponseWriter
	status int
}

func (w *recWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *recWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(w.ResponseWriter, r)
}

func (w *recWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *recWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}

func (w *recWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

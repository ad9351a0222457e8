package sim

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

type fault struct {
	id        int
	spec      FaultSpec
	re        *regexp.Regexp
	remaining int // -1: unlimited
}

type rateLimit struct {
	spec        RateLimitSpec
	re          *regexp.Regexp
	windowStart time.Time
	count       int
}

func matches(method string, re *regexp.Regexp, r *http.Request) bool {
	if method != "" && !strings.EqualFold(method, r.Method) {
		return false
	}
	return re == nil || re.MatchString(r.URL.Path)
}

func compileRoute(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("sim: path regexp %q: %w", expr, err)
	}
	return re, nil
}

// Fault installs a fault and returns its id. Faults are checked in the order they were added;
// the first match applies.
func (s *Server) Fault(f FaultSpec) (int, error) {
	re, err := compileRoute(f.PathRegexp)
	if err != nil {
		return 0, err
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
		return 0, fmt.Errorf("sim: fault status %d is not an HTTP status", f.Status)
	}
	if f.Status == 0 && !f.Drop && f.Delay <= 0 && f.TruncateAfter <= 0 {
		return 0, fmt.Errorf("sim: fault needs a Status, Drop, Delay or TruncateAfter")
	}
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.nextFault++
	rem := f.Count
	if rem <= 0 {
		rem = -1
	}
	s.faults = append(s.faults, &fault{id: s.nextFault, spec: f, re: re, remaining: rem})
	return s.nextFault, nil
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.faultMu.Lock()
	s.faults = nil
	s.faultMu.Unlock()
}

// RateLimit adds a limit: more than N matching requests within a fixed Window get 429.
func (s *Server) RateLimit(spec RateLimitSpec) error {
	re, err := compileRoute(spec.PathRegexp)
	if err != nil {
		return err
	}
	if spec.N < 0 || spec.Window <= 0 {
		return fmt.Errorf("sim: rate limit needs N >= 0 and a positive Window")
	}
	s.faultMu.Lock()
	s.rateLimits = append(s.rateLimits, &rateLimit{spec: spec, re: re})
	s.faultMu.Unlock()
	return nil
}

// ClearRateLimits removes every rate limit.
func (s *Server) ClearRateLimits() {
	s.faultMu.Lock()
	s.rateLimits = nil
	s.faultMu.Unlock()
}

// RequestLog returns the wire requests seen so far, in arrival order.
func (s *Server) RequestLog() []LoggedRequest {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return append([]LoggedRequest(nil), s.reqLog...)
}

// ResetRequestLog forgets the logged requests.
func (s *Server) ResetRequestLog() {
	s.faultMu.Lock()
	s.reqLog = nil
	s.faultMu.Unlock()
}

// takeFault returns the fault that applies to r, consuming one use of it.
func (s *Server) takeFault(r *http.Request) *FaultSpec {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	for i, f := range s.faults {
		if !matches(f.spec.Method, f.re, r) {
			continue
		}
		if f.remaining > 0 {
			f.remaining--
			if f.remaining == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		spec := f.spec
		return &spec
	}
	return nil
}

// limited reports whether r exceeds a rate limit, and the seconds until the window ends.
func (s *Server) limited(r *http.Request) (int, bool) {
	now := time.Now()
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	for _, l := range s.rateLimits {
		if !matches(l.spec.Method, l.re, r) {
			continue
		}
		if l.windowStart.IsZero() || now.Sub(l.windowStart) >= l.spec.Window {
			l.windowStart, l.count = now, 0
		}
		l.count++
		if l.count > l.spec.N {
			return ceilSeconds(l.windowStart.Add(l.spec.Window).Sub(now)), true
		}
	}
	return 0, false
}

func ceilSeconds(d time.Duration) int {
	n := int((d + time.Second - 1) / time.Second)
	if n < 1 {
		n = 1
	}
	return n
}

func (s *Server) logStart(e LoggedRequest) int {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	s.reqLog = append(s.reqLog, e)
	return len(s.reqLog) - 1
}

func (s *Server) logEnd(i int, e LoggedRequest, status int, faulted bool) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	// A reset in between leaves nothing to update.
	if i < len(s.reqLog) && s.reqLog[i].Time.Equal(e.Time) && s.reqLog[i].Path == e.Path {
		s.reqLog[i].Status = status
		s.reqLog[i].Fault = faulted
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status  int
	limit   int64 // > 0: abort the connection after this many body bytes
	written int64
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.limit > 0 && w.written+int64(len(b)) >= w.limit {
		n, _ := w.ResponseWriter.Write(b[:w.limit-w.written])
		w.written += int64(n)
		if fl, ok := w.ResponseWriter.(http.Flusher); ok {
			fl.Flush()
		}
		// The server closes the connection without finishing the body: the client sees a short read.
		panic(http.ErrAbortHandler)
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wire wraps a wire-protocol handler with the request log, faults and rate limits.
func (s *Server) wire(w http.ResponseWriter, r *http.Request, next http.HandlerFunc) {
	e := LoggedRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Time: s.now(), Auth: authKind(r)}
	idx := s.logStart(e)
	s.log.Debug("sim: request", "method", r.Method, "path", r.URL.Path, "auth", e.Auth)
	f := s.takeFault(r)
	if f != nil {
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				s.logEnd(idx, e, 0, true)
				return
			}
		}
		if f.Drop {
			s.logEnd(idx, e, 0, true)
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler) // closes the connection when hijacking is unavailable
		}
		if f.Status != 0 {
			if f.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(ceilSeconds(f.RetryAfter)))
			}
			body := f.Body
			if body == "" {
				body = faultBody(f.Status)
			}
			if f.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer authorization_uri=https://login.microsoftonline.com/common, Basic realm="sim"`)
			}
			writeRaw(w, f.Status, body)
			s.logEnd(idx, e, f.Status, true)
			return
		}
	}
	var truncate int64
	if f != nil {
		truncate = f.TruncateAfter
	}
	if secs, ok := s.limited(r); ok {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		w.Header().Set("X-RateLimit-Resource", "Core")
		writeRaw(w, http.StatusTooManyRequests, ErrorBody("RequestBlockedException",
			"Request was blocked due to exceeding usage of resource 'Core' in namespace 'User'."))
		s.logEnd(idx, e, http.StatusTooManyRequests, true)
		return
	}
	rec := &statusRecorder{ResponseWriter: w, limit: truncate}
	defer func() {
		// Also runs when a truncating fault aborts the handler.
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		s.logEnd(idx, e, rec.status, truncate > 0)
	}()
	next(rec, r)
}

func faultBody(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return ErrorBody("UnauthorizedRequestException", "TF400813: The user '' is not authorized to access this resource.")
	case http.StatusForbidden:
		return ErrorBody("AccessDeniedException", "Access denied. Sim User needs Manage permissions to perform the action.")
	case http.StatusNotFound:
		return ErrorBody("TaskAgentPoolNotFoundException", "Simulated fault: not found.")
	case http.StatusTooManyRequests:
		return ErrorBody("RequestBlockedException", "Request was blocked due to exceeding usage of resource 'Core' in namespace 'User'.")
	}
	return ErrorBody("SimulatedFaultException", fmt.Sprintf("Simulated fault: HTTP %d %s.", status, http.StatusText(status)))
}

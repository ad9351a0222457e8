package ecstest

import (
	"io"
	"net/http"
	"time"
)

// Faults injected per route.

// Fail queues faults for the next requests of route, one per request.
func (s *Server) Fail(route Route, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[route] = append(s.faults[route], faults...)
}

// FailN queues n identical faults.
func (s *Server) FailN(route Route, n int, f Fault) {
	for i := 0; i < n; i++ {
		s.Fail(route, f)
	}
}

// fault applies the next queued fault of route; it reports whether the request was answered.
func (s *Server) fault(w http.ResponseWriter, r *http.Request, route Route) bool {
	s.mu.Lock()
	q := s.faults[route]
	if len(q) == 0 {
		s.mu.Unlock()
		return false
	}
	f := q[0]
	s.faults[route] = q[1:]
	s.mu.Unlock()
	if f.Delay > 0 {
		// Read the body first: only then does net/http notice a client that gives up and
		// cancel r.Context(), which ends the delay.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return true
		}
		if f.Status == 0 && f.Body == "" && !f.Drop {
			return false
		}
	}
	if f.Drop {
		if hj, ok := w.(*recorder).ResponseWriter.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler)
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	body := f.Body
	if body == "" {
		if route == RouteProtection {
			body = s.protectionErrorJSON("ServerException", "ecstest: injected fault")
		} else {
			body = `{"code":"InternalError","message":"ecstest: injected fault"}`
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
	return true
}

package sim

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func BenchmarkListAgents10k(b *testing.B) {
	s := New(Options{Tokens: map[string]string{"t": ScopeManage}})
	if err := s.SeedAgents("Default", 10000, "offline", time.Now().Add(-time.Hour), "a-"); err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/sim/_apis/distributedtask/pools/1/agents", nil)
		req.SetBasicAuth("", "t")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

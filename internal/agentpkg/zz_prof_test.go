package agentpkg

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestZZProf(t *testing.T) {
	p := os.Getenv("PERF_PKG")
	if p == "" {
		t.Skip()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, p) }))
	defer srv.Close()
	for i := 0; i < 3; i++ {
		d1 := filepath.Join(os.Getenv("PERF_DIR"), "prof")
		os.RemoveAll(d1)
		o := Options{Dir: d1, Version: "1.0.0", Platform: "linux-x64", UID: -1, GID: -1}
		if _, err := Install(context.Background(), o, srv.URL+"/p", ""); err != nil {
			t.Fatal(err)
		}
	}
}

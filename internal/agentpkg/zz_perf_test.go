package agentpkg

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestZZPerf(t *testing.T) {
	p := os.Getenv("PERF_PKG")
	if p == "" {
		t.Skip()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, p) }))
	defer srv.Close()
	base := os.Getenv("PERF_DIR")
	for i := 0; i < 3; i++ {
		d1 := filepath.Join(base, "ours")
		os.RemoveAll(d1)
		st := time.Now()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "AGENTPKG_HELPER=install", "AGENTPKG_DIR="+d1, "AGENTPKG_URL="+srv.URL+"/p")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatal(err, string(out))
		}
		ours := time.Since(st)
		oc := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		d2 := filepath.Join(base, "curl")
		os.RemoveAll(d2)
		os.MkdirAll(d2, 0o755)
		st = time.Now()
		c2 := exec.Command("sh", "-c", "curl -fsS "+srv.URL+"/p | tar -xz -C "+d2)
		if out, err := c2.CombinedOutput(); err != nil {
			t.Fatal(err, string(out))
		}
		ct := time.Since(st)
		cc := c2.ProcessState.UserTime() + c2.ProcessState.SystemTime()
		t.Logf("wall: ours %v curl|tar %v ratio %.2f; cpu: ours %v curl|tar %v", ours, ct, ours.Seconds()/ct.Seconds(), oc, cc)
	}
}

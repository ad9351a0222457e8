package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The simulator's command line, as people use it: serve, then drive it with the client commands.
func TestServeAndClientCommands(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "azp-sim")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	serve := exec.Command(bin, "serve", "--token", "cli-test-token-123", "--pool", "Linux", "--package-version", "4.260.0", "--package-dir", filepath.Join(dir, "pkgs"))
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		serve.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { serve.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			serve.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var url string
	select {
	case url = <-lines:
	case <-time.After(60 * time.Second):
		t.Fatal("serve printed no organisation URL")
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/sim") {
		t.Fatalf("first line %q, want the organisation URL", url)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append(args, "--url", url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("azp-sim %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if id := strings.TrimSpace(run("jobs", "queue", "--pool", "Linux", "--name", "from-cli", "--duration", "1s")); id != "1" {
		t.Fatalf("queued request id %q, want 1", id)
	}
	var reqs []map[string]any
	if err := json.Unmarshal([]byte(run("jobs", "list", "--json")), &reqs); err != nil || len(reqs) != 1 || reqs[0]["name"] != "from-cli" {
		t.Fatalf("jobs list: %v %v", reqs, err)
	}
	if out := run("agents", "list", "--pool", "Linux"); !strings.Contains(out, "NAME") {
		t.Fatalf("agents list: %q", out)
	}
	run("log") // exits 0
	if _, err := os.Stat(filepath.Join(dir, "pkgs", "vsts-agent-linux-x64-4.260.0.tar.gz")); err != nil {
		t.Fatalf("package not built: %v", err)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/capture"
)

// The simulator's command line, as people use it: serve, then drive it with the client commands.
// Everything runs in-process: the commands write to the app's streams, and serve ends when its
// context does.
func TestServeAndClientCommands(t *testing.T) {
	dir := t.TempDir()
	var serveOut, serveErr capture.Buffer
	stopCtx, stopServe := context.WithCancel(context.Background())
	srv := &app{out: &serveOut, err: &serveErr, stopContext: func() (context.Context, context.CancelFunc) {
		return context.WithCancel(stopCtx)
	}}
	served := make(chan int, 1)
	go func() {
		served <- srv.main([]string{"serve", "--token", "cli-test-token-123", "--pool", "Linux", "--package-version", "4.260.0", "--package-dir", filepath.Join(dir, "pkgs")})
	}()
	t.Cleanup(func() {
		stopServe()
		select {
		case code := <-served:
			if code != 0 {
				t.Errorf("serve exited %d\n%s", code, serveErr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	var url string
	for deadline := time.Now().Add(60 * time.Second); url == ""; time.Sleep(20 * time.Millisecond) {
		if line, _, ok := strings.Cut(serveOut.String(), "\n"); ok {
			url = line
		} else if time.Now().After(deadline) {
			t.Fatalf("serve printed no organisation URL\n%s", serveErr.String())
		}
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/sim") {
		t.Fatalf("first line %q, want the organisation URL", url)
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := (&app{out: &out, err: &errb}).main(append(args, "--url", url)); code != 0 {
			t.Fatalf("azp-sim %v: exit %d\n%s%s", args, code, out.String(), errb.String())
		}
		return out.String()
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

// TestHelp: help for the tool and for a command is a success, printed where it was asked for.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}, {"jobs", "queue", "-h"}, {"build-package", "--help"}} {
		var out, errb bytes.Buffer
		if code := (&app{out: &out, err: &errb}).main(args); code != 0 {
			t.Errorf("azp-sim %v: exit %d, want 0\n%s", args, code, errb.String())
		}
		if out.Len()+errb.Len() == 0 {
			t.Errorf("azp-sim %v printed nothing", args)
		}
	}
	var out, errb bytes.Buffer
	if code := (&app{out: &out, err: &errb}).main([]string{"frobnicate"}); code != 1 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown command: exit %d\n%s", code, errb.String())
	}
}

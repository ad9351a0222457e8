//go:build linux

package preflight_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/preflight"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

func line(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[1] == name {
			return l
		}
	}
	return ""
}

// A server that resets every connection: `check` tries it once (no 2-minute retry loop).
func TestCheckTriesTheServerOnce(t *testing.T) {
	w := newWorld(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var conns atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	env := map[string]string{"AZP_URL": "http://" + l.Addr().String() + "/org", "AZP_TOKEN": managePAT, "AZP_AGENT_PLATFORM": "linux-x64"}
	o := w.check(t, env, func(d *preflight.Deps) { d.ClientOptions = nil })
	if exit.Code(o.err) != 1 || !strings.Contains(line(o.out, "server"), "FAIL") || !strings.Contains(o.err.Error(), l.Addr().String()) {
		t.Fatalf("%v\n%s", o.err, o.out)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("check connected %d times; it must try once", n)
	}
}

// Warnings logged during the checks are plain notes, not JSON lines inside the table.
func TestCheckPrintsNoJSON(t *testing.T) {
	w := newWorld(t)
	w.sim.Fault(sim.FaultSpec{Method: "GET", PathRegexp: "/distributedtask/pools$", Status: 503, Count: 2})
	defer w.sim.ClearFaults()
	env := map[string]string{"AZP_URL": w.sim.OrgURL(), "AZP_TOKEN": managePAT, "AZP_AGENT_PLATFORM": "linux-x64"}
	o := w.check(t, env, func(d *preflight.Deps) {
		d.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil)) // what the command line hands over
	})
	if o.err != nil {
		t.Fatalf("%v\n%s", o.err, o.out)
	}
	for _, l := range strings.Split(o.out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "{") {
			t.Errorf("JSON line in the table: %s", l)
		}
	}
	if !strings.Contains(o.out, "note: server error; retrying") {
		t.Errorf("the retry warning is not shown as a note:\n%s", o.out)
	}
}

// An agent baked by `tar -xz` (no marker) is ok without any package listed by the server.
func TestCheckBakedPackageNeedsNoListing(t *testing.T) {
	w := newWorld(t)
	bin := filepath.Join(t.TempDir(), "azp-sim")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	res, err := pkgbuild.Build(pkgbuild.Options{Version: "4.250.0", Platform: "linux-x64", AgentBinary: bin, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "agent")
	os.Mkdir(dir, 0o755)
	if out, err := exec.Command("tar", "-xzf", res.Path, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, pin := range []string{"", "4.250.0"} {
		env := map[string]string{"AZP_URL": w.sim.OrgURL(), "AZP_TOKEN": managePAT, "AZP_AGENT_PLATFORM": "linux-x64",
			"AZP_AGENT_DIR": dir, "AZP_AGENT_VERSION": pin}
		o := w.check(t, env, nil)
		if o.err != nil || !strings.Contains(line(o.out, "package"), "4.250.0 is baked into the image") {
			t.Fatalf("pin %q: %v\n%s", pin, o.err, o.out)
		}
	}
}

// AZP_AGENT_DIR on a file is blamed on AZP_AGENT_DIR (exit 2), not on AZP_WORK below it.
func TestCheckAgentDirOnAFile(t *testing.T) {
	w := newWorld(t)
	file := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(file, []byte("x"), 0o644)
	env := map[string]string{"AZP_URL": w.sim.OrgURL(), "AZP_TOKEN": managePAT, "AZP_AGENT_PLATFORM": "linux-x64", "AZP_AGENT_DIR": file}
	o := w.check(t, env, func(d *preflight.Deps) { d.WorkDir = nil })
	if exit.Code(o.err) != 2 || !strings.HasPrefix(o.err.Error(), "check agentdir:") || !strings.Contains(o.err.Error(), "AZP_AGENT_DIR "+file+" is a file") {
		t.Fatalf("%v\n%s", o.err, o.out)
	}
	if !strings.HasPrefix(line(o.out, "workdir"), "skip") {
		t.Errorf("work directory not skipped:\n%s", o.out)
	}
}

// A work directory the agent's user cannot reach is a configuration error naming AZP_RUN_AS,
// found by `check` and by Local (which `run` calls before the network).
func TestWorkDirUnreachableForTheAgentUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: root can write where the agent's user cannot")
	}
	w := newWorld(t)
	private := filepath.Join(t.TempDir(), "private")
	os.Mkdir(private, 0o700)
	work := filepath.Join(private, "work")
	os.Mkdir(work, 0o777)
	env := map[string]string{"AZP_URL": w.sim.OrgURL(), "AZP_TOKEN": managePAT, "AZP_AGENT_PLATFORM": "linux-x64",
		"AZP_AGENT_DIR": t.TempDir(), "AZP_WORK": work, "AZP_RUN_AS": "1000:1000"}
	o := w.check(t, env, nil)
	if exit.Code(o.err) != 2 || !strings.HasPrefix(o.err.Error(), "check workdir:") {
		t.Fatalf("%v\n%s", o.err, o.out)
	}
	for _, want := range []string{"AZP_WORK " + work, "AZP_RUN_AS", private, "1000:1000"} {
		if !strings.Contains(o.err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, o.err)
		}
	}
	// Local, as run uses it: the same error, with no server involved.
	get := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	s, err := config.Resolve(context.Background(), config.Options{Env: get})
	if err != nil {
		t.Fatal(err)
	}
	if err := preflight.Local(s, 1000, 1000); exit.Code(err) != 2 || !strings.Contains(err.Error(), private) {
		t.Errorf("Local: %v", err)
	}
	if err := preflight.Local(s, -1, -1); err != nil {
		t.Errorf("Local as root: %v", err)
	}
}

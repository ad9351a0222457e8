package agentpkg

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMain doubles as the helper process for the cross-process cache test: the test binary
// re-executes itself with AGENTPKG_HELPER set and installs once, like a second container.
func TestMain(m *testing.M) {
	if os.Getenv("AGENTPKG_HELPER") == "install" {
		os.Exit(helperInstall())
	}
	os.Exit(m.Run())
}

func helperInstall() int {
	o := Options{Dir: os.Getenv("AGENTPKG_DIR"), CacheDir: os.Getenv("AGENTPKG_CACHE"),
		Version: "4.261.0", Platform: "linux-x64", UID: -1, GID: -1, RetryDelay: 10 * time.Millisecond}
	if _, err := Install(context.Background(), o, os.Getenv("AGENTPKG_URL"), os.Getenv("AGENTPKG_SHA256")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestCacheSharedBetweenProcesses(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	s.set(func(s *server) { s.throttle = 5 * time.Millisecond }) // slow enough that all three start while the first downloads
	cache := t.TempDir()
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	var dirs []string
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("agent", i))
		dirs = append(dirs, dir)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "AGENTPKG_HELPER=install", "AGENTPKG_DIR="+dir, "AGENTPKG_CACHE="+cache,
			"AGENTPKG_URL="+url, "AGENTPKG_SHA256="+sha(pkg))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("install %d: %v\n%s", i, err, outs[i])
		}
	}
	if n := s.hitCount(); n != 1 {
		t.Errorf("the package was downloaded %d times, want once for all containers", n)
	}
	for _, d := range dirs {
		assertInstalled(t, d, "4.261.0")
	}
	b, err := os.ReadFile(filepath.Join(cache, "vsts-agent-linux-x64-4.261.0.tar.gz"))
	if err != nil || sha(b) != sha(pkg) {
		t.Errorf("cache entry: %v", err)
	}
	assertNoTemp(t, cache)
}

func TestCacheHitNeedsNoDownload(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	cache := t.TempDir()
	for i := range 2 {
		dir := t.TempDir()
		o, rec := testOptions(t, dir)
		o.Version, o.CacheDir = "4.261.0", cache
		hash := sha(pkg)
		if i == 1 {
			hash = "" // the hash recorded at publication is used
		}
		if _, err := Install(context.Background(), o, url, hash); err != nil {
			t.Fatal(err)
		}
		assertInstalled(t, dir, "4.261.0")
		if i == 1 && len(rec.find("agent package taken from the cache")) != 1 {
			t.Error("second install did not use the cache")
		}
	}
	if n := s.hitCount(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
	if b, _ := os.ReadFile(filepath.Join(cache, "vsts-agent-linux-x64-4.261.0.tar.gz.sha256")); string(b) != sha(pkg)+"\n" {
		t.Errorf("recorded hash %q", b)
	}
	assertNoTemp(t, cache)
}

func TestCorruptCacheEntryIsReplaced(t *testing.T) {
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	for _, tc := range []struct {
		name      string
		corrupt   func([]byte) []byte
		serverSHA bool
	}{
		{"flipped byte, server hash", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, true},
		{"flipped byte, recorded hash", func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, false},
		{"truncated, recorded hash", func(b []byte) []byte { return b[:len(b)/3] }, false},
		{"flipped trailer byte, server hash", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			url := s.add("p.tar.gz", pkg)
			cache := t.TempDir()
			entry := filepath.Join(cache, "vsts-agent-linux-x64-4.261.0.tar.gz")
			os.WriteFile(entry, tc.corrupt(bytes.Clone(pkg)), 0o644)
			os.WriteFile(entry+".sha256", []byte(sha(pkg)+"\n"), 0o644)
			dir := t.TempDir()
			o, rec := testOptions(t, dir)
			o.Version, o.CacheDir = "4.261.0", cache
			hash := ""
			if tc.serverSHA {
				hash = sha(pkg)
			}
			if _, err := Install(context.Background(), o, url, hash); err != nil {
				t.Fatal(err)
			}
			assertInstalled(t, dir, "4.261.0")
			if len(rec.find("cached agent package is corrupt; replacing it")) != 1 {
				t.Error("corruption not logged")
			}
			if n := s.hitCount(); n != 1 {
				t.Errorf("%d downloads, want 1", n)
			}
			if b, _ := os.ReadFile(entry); sha(b) != sha(pkg) {
				t.Error("cache entry not replaced")
			}
			assertNoTemp(t, cache)
		})
	}
}

func TestCacheDownloadFailureLeavesNoEntry(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	cache := t.TempDir()
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version, o.CacheDir = "4.261.0", cache
	_, err := Install(context.Background(), o, url, sha([]byte("other")))
	assertCode(t, err, 1, "SHA-256")
	assertNoPackage(t, dir)
	assertNoTemp(t, cache)
	if _, err := os.Stat(filepath.Join(cache, "vsts-agent-linux-x64-4.261.0.tar.gz")); err == nil {
		t.Error("a package that failed its hash was published in the cache")
	}
}

func TestCacheLockWaitIsCancellable(t *testing.T) {
	cache := t.TempDir()
	unlock, err := lockFile(context.Background(), filepath.Join(cache, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version, o.CacheDir = "4.261.0", cache
	_, err = Install(ctx, o, "http://127.0.0.1:1/never", "")
	if err == nil || ctx.Err() == nil {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("waited %v for a cancelled lock", d)
	}
	assertNoPackage(t, dir)
}

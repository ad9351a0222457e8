//go:build linux

// Package containertest builds image/Dockerfile and runs it, alone and through compose.yaml, in a
// real Docker engine, and asserts what a user sees from outside: `docker inspect`, `docker logs`,
// exit codes, the simulator's view of the pool, and what a process exec'd as the agent user can
// reach. Its tests run with `make test-containers` (AZP_CONTAINER_TESTS=1); without it, or without
// an engine and the buildx and compose plugins, they skip with the reason.
//
// The images are built the way the README shows: static binaries from `go build` in a directory the
// ignore file lets in, `docker buildx build --load` on the Debian base made by
// scripts/debian-base.sh (no registry and no Alpine repository is reachable here), and the fake
// agent package baked with the image's own `azp-entrypoint install --url file://...`.
package containertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// AgentVersion is the fake agent package baked into the test image.
const AgentVersion = "4.260.0"

// SimToken is the token the test simulator accepts (the content of image/demo/sim-token).
const SimToken = "azp-sim-demo-token"

// Images are the images the tests run.
type Images struct {
	Base  string // the Debian base (scripts/debian-base.sh)
	Agent string // image/Dockerfile target runtime, fake agent baked in
	Sim   string // image/Dockerfile target sim
	Root  string // repository root (the build context)
}

// Require skips the test unless container tests are asked for and an engine with the buildx and
// compose plugins answers.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv("AZP_CONTAINER_TESTS") != "1" {
		t.Skip("container tests run with `make test-containers` (AZP_CONTAINER_TESTS=1)")
	}
	if err := engineProblem(); err != nil {
		t.Skipf("no usable Docker engine: %v", err)
	}
}

var (
	engineOnce sync.Once
	engineErr  error
)

func engineProblem() error {
	engineOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := Docker(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
			engineErr = fmt.Errorf("docker version: %w", err)
			return
		}
		if _, err := Docker(ctx, "buildx", "version"); err != nil {
			engineErr = fmt.Errorf("docker buildx is missing (scripts/install-docker-plugins.sh): %w", err)
			return
		}
		if _, err := Docker(ctx, "compose", "version"); err != nil {
			engineErr = fmt.Errorf("docker compose is missing (scripts/install-docker-plugins.sh): %w", err)
		}
	})
	return engineErr
}

// Docker runs the docker CLI and returns its standard output, trimmed. A failure carries the
// command and its standard error.
func Docker(ctx context.Context, args ...string) (string, error) {
	return DockerIn(ctx, "", nil, args...)
}

// DockerIn runs the docker CLI in dir with env as its whole environment (nil: this process's).
func DockerIn(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Dir = dir
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, tail(errb.String(), 4000))
	}
	return strings.TrimSpace(out.String()), nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Must runs docker with a generous timeout and fails the test on error.
func Must(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := Docker(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Try runs docker with a generous timeout and returns its output and error.
func Try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return Docker(ctx, args...)
}

// RepoRoot finds the repository root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

var (
	imagesOnce sync.Once
	images     Images
	imagesErr  error
)

// Build returns the test images, building them once per test binary.
func Build(t testing.TB) Images {
	t.Helper()
	Require(t)
	root := RepoRoot(t)
	imagesOnce.Do(func() { images, imagesErr = build(root, t.Logf) })
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
	return images
}

// BinDir is the directory, relative to the build context, where the tests put the static binaries
// and the fake agent package (the ignore file lets dist/ in).
const BinDir = "dist/containertest"

func build(root string, logf func(string, ...any)) (Images, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	im := Images{Root: root}
	start := time.Now()

	im.Base = os.Getenv("AZP_TEST_BASE_IMAGE")
	if im.Base == "" {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "debian-base.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return im, fmt.Errorf("scripts/debian-base.sh: %w", err)
		}
		im.Base = strings.TrimSpace(string(out))
	}

	// Static binaries for the engine's architecture, as `make build` makes them.
	arch := runtime.GOARCH
	bin := filepath.Join(root, BinDir)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return im, err
	}
	for _, name := range []string{"azp-entrypoint", "azp-sim"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w",
			"-o", filepath.Join(bin, name+"-linux-"+arch), "./cmd/"+name)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if out, err := cmd.CombinedOutput(); err != nil {
			return im, fmt.Errorf("go build %s: %w: %s", name, err, out)
		}
	}
	// The fake agent package, as a user's mirror would hold the real one. Debian is glibc.
	platform := map[string]string{"amd64": "linux-x64", "arm64": "linux-arm64"}[arch]
	mirror := filepath.Join(bin, "agent-mirror")
	os.RemoveAll(mirror)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "azp-sim-linux-"+arch), "build-package",
		"--version", AgentVersion, "--platform", platform, "--out", mirror)
	out, err := cmd.Output()
	if err != nil {
		return im, fmt.Errorf("azp-sim build-package: %w", err)
	}
	var pkg struct{ Filename, SHA256 string }
	if err := json.Unmarshal(out, &pkg); err != nil {
		return im, fmt.Errorf("azp-sim build-package output %q: %w", out, err)
	}

	// Tags by content: the same inputs reuse the image.
	h := sha256.New()
	for _, f := range []string{"image/Dockerfile", "image/Dockerfile.dockerignore", BinDir + "/azp-entrypoint-linux-" + arch, BinDir + "/azp-sim-linux-" + arch} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			return im, err
		}
		h.Write(b)
	}
	io.WriteString(h, im.Base+pkg.SHA256)
	tag := hex.EncodeToString(h.Sum(nil))[:12]
	im.Agent = "azp-entrypoint-test:" + tag
	im.Sim = "azp-sim-test:" + tag

	common := []string{"buildx", "build", "--load", "--progress", "plain", "-f", "image/Dockerfile",
		"--build-arg", "BASE_IMAGE=" + im.Base, "--build-arg", "BIN_DIR=" + BinDir}
	agentArgs := append(append([]string{}, common...),
		"--build-arg", "AGENT_VERSION="+AgentVersion,
		"--build-arg", "AGENT_SHA256="+pkg.SHA256,
		"--build-arg", "AGENT_URL=file:///mnt/bin/agent-mirror/"+pkg.Filename,
		"--target", "runtime", "-t", im.Agent, ".")
	simArgs := append(append([]string{}, common...), "--target", "sim", "-t", im.Sim, ".")
	for _, args := range [][]string{agentArgs, simArgs} {
		if _, err := DockerIn(ctx, root, nil, args...); err != nil {
			return im, err
		}
	}
	logf("images %s and %s built on %s in %s", im.Agent, im.Sim, im.Base, time.Since(start).Round(time.Second))
	return im, nil
}

// Eventually polls cond until it returns nil or the deadline passes; the last error fails the test.
func Eventually(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	delay := 100 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(delay)
		if delay < 2*time.Second {
			delay *= 2
		}
	}
}

// ErrNotYet is a convenience for conditions that are not met yet.
var ErrNotYet = errors.New("not yet")

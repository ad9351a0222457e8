package deploytest

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
)

// healthCommand is the one health check every deployment file must use: the
// binary's own `health` command, by absolute path, in exec form.
var healthCommand = []string{"CMD", "/usr/local/bin/azp-entrypoint", "health"}

// repoRoot is the repository root, found from this file's location so the tests
// work from any working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", file, err)
	}
	return root
}

// settings is the binary's own table of settings, by environment variable.
func settings(t *testing.T) map[string]config.Definition {
	t.Helper()
	defs := config.Definitions()
	if len(defs) == 0 {
		t.Fatal("config.Definitions() is empty")
	}
	out := make(map[string]config.Definition, len(defs))
	for _, d := range defs {
		out[d.Env] = d
	}
	for _, must := range []string{"AZP_URL", "AZP_STOP_TIMEOUT", "AZP_SECRET_ID", "AZP_WORK", "AZP_WORK_SHARED"} {
		if _, ok := out[must]; !ok {
			t.Fatalf("config.Definitions() has no %s: the settings table and these tests disagree", must)
		}
	}
	return out
}

// checkEnvironment asserts that every AZP_* name a deployment file sets is a real
// setting of the binary and that no secret setting is set in plain text.
func checkEnvironment(t *testing.T, where string, env map[string]string) {
	t.Helper()
	defs := settings(t)
	for name := range env {
		d, known := defs[name]
		if strings.HasPrefix(name, "AZP_") && !known {
			t.Errorf("%s sets %s, which is not a setting of azp-entrypoint (internal/config)", where, name)
			continue
		}
		if known && d.Secret {
			t.Errorf("%s sets the secret setting %s in plain text: use AZP_SECRET_ID or AZP_TOKEN_FILE", where, name)
		}
	}
}

// parseStopTimeout reads AZP_STOP_TIMEOUT the way a user writes it: a Go
// duration ("120s", "2m") or a bare number of seconds.
func parseStopTimeout(t *testing.T, where, v string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: AZP_STOP_TIMEOUT=%q is not a duration: %v", where, v, err)
	}
	return d
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
)

func envOf(m map[string]string) config.Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestCommandLine(t *testing.T) {
	state := t.TempDir()
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		code     int
		out, err string // substrings
	}{
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, err: `unknown command "frobnicate"`},
		{name: "help lists commands", args: []string{"help"}, code: 0, out: "prune"},
		{name: "run --help lists every setting", args: []string{"run", "--help"}, code: 0, out: "AZP_STOP_TIMEOUT (default 30s)"},
		{name: "bare --help is run's", args: []string{"--help"}, code: 0, out: "--once"},
		{name: "version", args: []string{"version"}, code: 0, out: "azp-entrypoint dev"},
		{name: "--version is a flag", args: []string{"--version"}, code: 0, out: "azp-entrypoint dev"},
		{name: "install --help shows its own --url", args: []string{"install", "--help"}, code: 0, out: "--url\n"},
		{name: "health --help shows --state-dir", args: []string{"health", "--help"}, code: 0, out: "--state-dir\n"},
		{name: "negative stop timeout", args: []string{"check", "--url", "https://dev.azure.com/acme", "--token", "abcdefgh", "--stop-timeout", "-5"}, code: 2, out: "negative"},
		{name: "version takes no argument", args: []string{"version", "extra"}, code: 2, err: `unexpected argument "extra"`},
		{name: "install needs a version", args: []string{"install"}, code: 2, err: "--version is required"},
		{name: "install rejects a bad flag", args: []string{"install", "--nope"}, code: 2, err: "flag provided but not defined"},
		{name: "health without state", args: []string{"health", "--state-dir", state}, code: 1, out: "unhealthy"},
		{name: "check names a missing AZP_URL", args: []string{"check"}, env: map[string]string{"AZP_TOKEN": "abcdefgh"}, code: 2, out: "AZP_URL"},
		{name: "check names a malformed AZP_URL", args: []string{"check", "--url", "dev.azure.com/acme"}, env: map[string]string{"AZP_TOKEN": "abcdefgh"}, code: 2, out: "not an organisation URL"},
		{name: "prune needs a prefix", args: []string{"prune", "--url", "https://dev.azure.com/acme", "--token", "abcdefgh"}, code: 2, err: "--prefix"},
		{name: "bad boolean", args: []string{"check", "--url", "https://dev.azure.com/acme", "--token", "abcdefgh", "--once=yes"}, code: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			env := map[string]string{"AZP_LOG_FORMAT": "text", "AZP_STATE_DIR": state}
			for k, v := range tc.env {
				env[k] = v
			}
			code := MainEnv(tc.args, &out, &errb, envOf(env))
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Errorf("stdout lacks %q:\n%s", tc.out, out.String())
			}
			if !strings.Contains(errb.String(), tc.err) {
				t.Errorf("stderr lacks %q:\n%s", tc.err, errb.String())
			}
			if strings.Contains(out.String()+errb.String(), "abcdefgh") {
				t.Error("the token appears in the output")
			}
		})
	}
}

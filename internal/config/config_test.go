package config

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// layers are the inputs of one resolution. A non-nil secret is served as the JSON SecretString
// of AZP_SECRET_ID (set to "sid" unless a layer sets it).
type layers struct {
	flags  map[string]string
	env    map[string]string
	secret map[string]string
}

func (l layers) resolve(t *testing.T) (*Settings, error) {
	t.Helper()
	env := maps.Clone(l.env)
	if env == nil {
		env = map[string]string{}
	}
	if l.secret != nil && env["AZP_SECRET_ID"] == "" && l.flags["AZP_SECRET_ID"] == "" {
		env["AZP_SECRET_ID"] = "sid"
	}
	return Resolve(context.Background(), Options{
		Flags: l.flags,
		Env:   mapEnv(env),
		Secret: func(_ context.Context, id string) (string, error) {
			if l.secret == nil {
				// A secret ID under test with no secret layer: a plain token named after the ID,
				// so the test can see which ID was used.
				return "tok-" + id, nil
			}
			b, err := json.Marshal(l.secret)
			return string(b), err
		},
	})
}

func mapEnv(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// render shows a resolved setting as text, to compare with the table below.
func render(s *Settings, env string) string {
	switch env {
	case "AZP_URL":
		return s.URL
	case "AZP_TOKEN":
		return s.Token
	case "AZP_TOKEN_FILE":
		return s.TokenFile
	case "AZP_CLIENTID":
		return s.ClientID
	case "AZP_CLIENTSECRET":
		return s.ClientSecret
	case "AZP_TENANTID":
		return s.TenantID
	case "AZP_SECRET_ID":
		return s.SecretID
	case "AZP_POOL":
		return s.Pool
	case "AZP_AGENT_NAME":
		return s.AgentName
	case "AZP_AGENT_NAME_PREFIX":
		return s.AgentNamePrefix
	case "AZP_WORK":
		return s.Work
	case "AZP_WORK_SHARED":
		return s.WorkShared.String()
	case "AZP_WORK_MIN_FREE":
		return strconv.FormatInt(s.WorkMinFree, 10)
	case "AZP_TOOLS_DIR":
		return s.ToolsDir
	case "AZP_AGENT_DIR":
		return s.AgentDir
	case "AZP_AGENT_VERSION":
		return s.AgentVersion
	case "AZP_AGENT_PLATFORM":
		return s.AgentPlatform
	case "AZP_AGENT_CACHE":
		return s.AgentCache
	case "AZP_ONCE":
		return strconv.FormatBool(s.Once)
	case "AZP_IDLE_TIMEOUT":
		return s.IdleTimeout.String()
	case "AZP_STOP_TIMEOUT":
		return s.StopTimeout.String()
	case "AZP_DEREGISTER":
		return strconv.FormatBool(s.Deregister)
	case "AZP_RUN_AS":
		return s.RunAs
	case "AZP_ECS_TASK_PROTECTION":
		return s.ECSTaskProtection.String()
	case "AZP_JOB_TASK_ROLE":
		return strconv.FormatBool(s.JobTaskRole)
	case "AZP_CA_CERT_FILE":
		return s.CACertFile
	case "HTTPS_PROXY":
		return s.HTTPSProxy
	case "HTTP_PROXY":
		return s.HTTPProxy
	case "NO_PROXY":
		return s.NoProxy
	case "AZURE_AUTHORITY_HOST":
		return s.AuthorityHost
	case "AZP_LOG_FORMAT":
		return s.LogFormat
	case "AZP_LOG_LEVEL":
		return s.LogLevel
	case "AZP_STATE_DIR":
		return s.StateDir
	}
	panic("render: no case for " + env)
}

// valid holds two valid inputs per setting and what each resolves to.
type valid struct{ a, b, wantA, wantB string }

func validInputs(t *testing.T) map[string]valid {
	dir := t.TempDir()
	caA, caB := filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.pem")
	for _, f := range []string{caA, caB} {
		if err := os.WriteFile(f, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	same := func(a, b string) valid { return valid{a, b, a, b} }
	return map[string]valid{
		"AZP_URL":                 {"https://dev.azure.com/a/", "https://dev.azure.com/b", "https://dev.azure.com/a", "https://dev.azure.com/b"},
		"AZP_TOKEN":               same("tokA1234", "tokB1234"),
		"AZP_TOKEN_FILE":          same("/run/secrets/a", "/run/secrets/b"),
		"AZP_CLIENTID":            same("cid-a", "cid-b"),
		"AZP_CLIENTSECRET":        same("csec-a", "csec-b"),
		"AZP_TENANTID":            same("tid-a", "tid-b"),
		"AZP_SECRET_ID":           same("sid-a", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:b"),
		"AZP_POOL":                same("Linux", "Windows"),
		"AZP_AGENT_NAME":          same("agent-a", "agent b"),
		"AZP_AGENT_NAME_PREFIX":   same("ci-", "cd-"),
		"AZP_WORK":                same("/mnt/work", "w"),
		"AZP_WORK_SHARED":         same("true", "false"),
		"AZP_WORK_MIN_FREE":       {"1GiB", "500MB", "1073741824", "500000000"},
		"AZP_TOOLS_DIR":           same("/mnt/tools", "/opt/tools"),
		"AZP_AGENT_DIR":           same("/opt/agent", "/azp/other"),
		"AZP_AGENT_VERSION":       {"v4.260.0", "4.261.1", "4.260.0", "4.261.1"},
		"AZP_AGENT_PLATFORM":      same("linux-musl-arm64", "linux-x64"),
		"AZP_AGENT_CACHE":         same("/mnt/cache", "/var/cache"),
		"AZP_ONCE":                same("true", "false"),
		"AZP_IDLE_TIMEOUT":        {"15m", "0", "15m0s", "0s"},
		"AZP_STOP_TIMEOUT":        {"120", "45s", "2m0s", "45s"},
		"AZP_DEREGISTER":          same("false", "true"),
		"AZP_RUN_AS":              same("1000:1000", "agent"),
		"AZP_ECS_TASK_PROTECTION": same("false", "true"),
		"AZP_JOB_TASK_ROLE":       same("true", "false"),
		"AZP_CA_CERT_FILE":        same(caA, caB),
		"HTTPS_PROXY":             same("http://proxy-a:3128", "proxy-b:8080"),
		"HTTP_PROXY":              same("https://proxy-a:3129", "socks5://proxy-b:1080"),
		"NO_PROXY":                same("169.254.170.2,localhost", ".internal"),
		"AZURE_AUTHORITY_HOST":    same("https://login.microsoftonline.us/", "https://login.chinacloudapi.cn/"),
		"AZP_LOG_FORMAT":          same("text", "json"),
		"AZP_LOG_LEVEL":           same("debug", "warn"),
		"AZP_STATE_DIR":           same("/run/azp", "/tmp/x"),
	}
}

// base returns the environment that makes a resolution valid apart from the setting under test:
// a URL and a credential that does not interfere with it.
func base(env string) map[string]string {
	switch env {
	case "AZP_URL":
		return map[string]string{"AZP_TOKEN": "basetoken"}
	case "AZP_TOKEN", "AZP_TOKEN_FILE", "AZP_SECRET_ID":
		return map[string]string{"AZP_URL": "https://dev.azure.com/base"}
	case "AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_TENANTID":
		m := map[string]string{"AZP_URL": "https://dev.azure.com/base", "AZP_CLIENTID": "c", "AZP_CLIENTSECRET": "cs", "AZP_TENANTID": "t"}
		delete(m, env)
		return m
	}
	return map[string]string{"AZP_URL": "https://dev.azure.com/base", "AZP_TOKEN": "basetoken"}
}

func with(m map[string]string, k, v string) map[string]string {
	m = maps.Clone(m)
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

func TestTablesCoverEveryDefinition(t *testing.T) {
	in := validInputs(t)
	for _, d := range Definitions() {
		if _, ok := in[d.Env]; !ok {
			t.Errorf("validInputs has no case for %s", d.Env)
		}
		_ = render(&Settings{}, d.Env) // panics if render misses it
	}
	if len(in) != len(Definitions()) {
		t.Errorf("validInputs has %d cases for %d definitions", len(in), len(Definitions()))
	}
}

// TestPrecedence resolves every setting through every pair of levels the contract orders:
// flag > env, env > secret, flag > secret, secret > default, env > default (and flag > default).
func TestPrecedence(t *testing.T) {
	in := validInputs(t)
	for _, d := range Definitions() {
		v := in[d.Env]
		type pair struct {
			name       string
			l          layers
			want, from string
		}
		b := base(d.Env)
		pairs := []pair{
			{"flag>env", layers{flags: map[string]string{d.Env: v.a}, env: with(b, d.Env, v.b)}, v.wantA, "flag"},
			{"env alone", layers{env: with(b, d.Env, v.b)}, v.wantB, "env"},
			{"flag alone", layers{flags: map[string]string{d.Env: v.b}, env: b}, v.wantB, "flag"},
		}
		if d.FromSecret {
			pairs = append(pairs,
				pair{"env>secret", layers{env: with(b, d.Env, v.a), secret: map[string]string{d.Env: v.b}}, v.wantA, "env"},
				pair{"flag>secret", layers{flags: map[string]string{d.Env: v.a}, env: b, secret: map[string]string{d.Env: v.b}}, v.wantA, "flag"},
				pair{"secret>default", layers{env: b, secret: map[string]string{d.Env: v.b}}, v.wantB, "secret"},
			)
		}
		if d.Default != "" {
			pairs = append(pairs,
				pair{"env>default", layers{env: with(b, d.Env, v.a)}, v.wantA, "env"},
				pair{"flag>default", layers{flags: map[string]string{d.Env: v.a}, env: b}, v.wantA, "flag"},
			)
			if d.FromSecret {
				pairs = append(pairs, pair{"secret>default", layers{env: b, secret: map[string]string{d.Env: v.a}}, v.wantA, "secret"})
			}
		}
		for _, p := range pairs {
			t.Run(d.Env+"/"+p.name, func(t *testing.T) {
				s, err := p.l.resolve(t)
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if got := render(s, d.Env); got != p.want {
					t.Errorf("%s = %q, want %q", d.Env, got, p.want)
				}
				if got := s.Sources[d.Env]; got != p.from {
					t.Errorf("Sources[%s] = %q, want %q", d.Env, got, p.from)
				}
			})
		}
	}
}

// TestDefaults checks the contract's defaults, and that a setting left unset (or set to blank at
// every level) resolves to them.
func TestDefaults(t *testing.T) {
	want := map[string]string{
		"AZP_POOL": "Default", "AZP_WORK": "_work", "AZP_WORK_SHARED": "auto", "AZP_WORK_MIN_FREE": "2147483648",
		"AZP_AGENT_DIR": "/azp/agent", "AZP_ONCE": "false", "AZP_IDLE_TIMEOUT": "0s", "AZP_STOP_TIMEOUT": "30s",
		"AZP_DEREGISTER": "true", "AZP_ECS_TASK_PROTECTION": "auto", "AZP_JOB_TASK_ROLE": "false",
		"AZP_LOG_LEVEL": "info", "AZP_STATE_DIR": "/tmp/azp-entrypoint",
	}
	blank := map[string]string{"AZP_URL": "https://dev.azure.com/acme", "AZP_TOKEN": "tok12345"}
	blankFlags := map[string]string{}
	blankSecret := map[string]string{}
	for _, d := range Definitions() {
		if _, set := blank[d.Env]; !set {
			blank[d.Env] = []string{"", " ", "\t\n"}[len(blank)%3]
			blankFlags[d.Env] = ""
			if d.FromSecret {
				blankSecret[d.Env] = "  "
			}
		}
	}
	blank["AZP_SECRET_ID"], blankFlags["AZP_SECRET_ID"] = "sid", ""
	for name, l := range map[string]layers{
		"unset": {env: map[string]string{"AZP_URL": "https://dev.azure.com/acme", "AZP_TOKEN": "tok12345"}},
		"blank": {flags: blankFlags, env: blank, secret: blankSecret},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := l.resolve(t)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range Definitions() {
				if d.Env == "AZP_URL" || d.Env == "AZP_TOKEN" || (name == "blank" && d.Env == "AZP_SECRET_ID") {
					continue
				}
				if got := render(s, d.Env); got != want[d.Env] {
					t.Errorf("%s = %q, want %q", d.Env, got, want[d.Env])
				}
				if d.Default != "" && s.Sources[d.Env] != "default" {
					t.Errorf("Sources[%s] = %q, want default", d.Env, s.Sources[d.Env])
				}
				if d.Default == "" && s.Sources[d.Env] != "" {
					t.Errorf("Sources[%s] = %q for an unset setting", d.Env, s.Sources[d.Env])
				}
			}
			if len(s.Warnings) != 0 {
				t.Errorf("warnings: %q", s.Warnings)
			}
		})
	}
}

type invalidCase struct {
	env, value string
	problem    string // part of Error.Problem
	shown      string // Error.Value when it differs from value
}

func invalidInputs(t *testing.T) []invalidCase {
	dir := t.TempDir()
	return []invalidCase{
		{env: "AZP_URL", value: "dev.azure.com/acme", problem: "not an organisation URL"},
		{env: "AZP_URL", value: "ftp://dev.azure.com/acme", problem: "not an organisation URL"},
		{env: "AZP_URL", value: "https://", problem: "not an organisation URL"},
		// The query and fragment are not shown (tokens and signatures travel there), nor user-info
		// with or without a scheme.
		{env: "AZP_URL", value: "https://dev.azure.com/acme?x=1", problem: "not an organisation URL", shown: "https://dev.azure.com/acme?…"},
		{env: "AZP_URL", value: "https://dev.azure.com/acme#x", problem: "not an organisation URL", shown: "https://dev.azure.com/acme#…"},
		{env: "AZP_URL", value: "https://dev.azure.com/acme?token=qtok0123456789#frag0123456789", problem: "not an organisation URL", shown: "https://dev.azure.com/acme?…"},
		{env: "AZP_URL", value: "pat0123456789@dev.azure.com/acme", problem: "not an organisation URL", shown: "***@dev.azure.com/acme"},
		{env: "AZP_URL", value: "me:pw0123456789@dev.azure.com/acme?x=1", problem: "not an organisation URL", shown: "***@dev.azure.com/acme?…"},
		{env: "AZP_URL", value: "https://me:pw#0123?456789@dev.azure.com/acme", problem: "not an organisation URL", shown: "https://***@dev.azure.com/acme"},
		{env: "AZP_URL", value: "http://[::1", problem: "not an organisation URL"},
		{env: "AZP_URL", value: "https://dev.azure.com", problem: "names no organisation"},
		{env: "AZP_URL", value: "https://dev.azure.com/", problem: "names no organisation"},
		{env: "AZP_URL", value: "https://me:hunter2pw@dev.azure.com/acme", problem: "holds credentials", shown: "https://***@dev.azure.com/acme"},
		{env: "AZP_URL", value: "https://patvalue123@dev.azure.com/acme", problem: "holds credentials", shown: "https://***@dev.azure.com/acme"},
		{env: "AZP_AGENT_NAME", value: strings.Repeat("a", 65), problem: "not a valid agent name"},
		{env: "AZP_AGENT_NAME", value: "a/b", problem: "not a valid agent name"},
		{env: "AZP_AGENT_NAME", value: "a:b", problem: "not a valid agent name"},
		{env: "AZP_AGENT_NAME", value: "a@b", problem: "not a valid agent name"},
		{env: "AZP_AGENT_NAME", value: "a*b", problem: "not a valid agent name"},
		{env: "AZP_AGENT_NAME", value: "a\tb", problem: "not a valid agent name"},
		{env: "AZP_AGENT_NAME_PREFIX", value: strings.Repeat("p", 41), problem: "not a valid agent name prefix"},
		{env: "AZP_AGENT_NAME_PREFIX", value: "ci/", problem: "not a valid agent name prefix"},
		{env: "AZP_WORK_SHARED", value: "yes", problem: "not auto, true or false"},
		{env: "AZP_WORK_SHARED", value: "1", problem: "not auto, true or false"},
		{env: "AZP_WORK_SHARED", value: "True", problem: "not auto, true or false"},
		{env: "AZP_WORK_SHARED", value: "AUTO", problem: "not auto, true or false"},
		{env: "AZP_WORK_MIN_FREE", value: "lots", problem: "not a size"},
		{env: "AZP_WORK_MIN_FREE", value: "-1GiB", problem: "not a size"},
		{env: "AZP_WORK_MIN_FREE", value: "2gib", problem: "not a size"},
		{env: "AZP_WORK_MIN_FREE", value: "1PiB", problem: "not a size"},
		{env: "AZP_WORK_MIN_FREE", value: "GiB", problem: "not a size"},
		{env: "AZP_WORK_MIN_FREE", value: "1.2.3", problem: "not a size"},
		{env: "AZP_WORK_MIN_FREE", value: "99999999999TiB", problem: "too large"},
		{env: "AZP_TOOLS_DIR", value: "tools", problem: "must be an absolute path"},
		{env: "AZP_AGENT_DIR", value: "agent", problem: "must be an absolute path"},
		{env: "AZP_AGENT_DIR", value: "./agent", problem: "must be an absolute path"},
		{env: "AZP_AGENT_CACHE", value: "cache", problem: "must be an absolute path"},
		{env: "AZP_STATE_DIR", value: "state", problem: "must be an absolute path"},
		{env: "AZP_AGENT_VERSION", value: "4.260", problem: "not a version"},
		{env: "AZP_AGENT_VERSION", value: "latest", problem: "not a version"},
		{env: "AZP_AGENT_VERSION", value: "4.260.0-rc1", problem: "not a version"},
		{env: "AZP_AGENT_VERSION", value: "v", problem: "not a version"},
		{env: "AZP_AGENT_PLATFORM", value: "linux-x86", problem: "not a supported value"},
		{env: "AZP_AGENT_PLATFORM", value: "win-x64", problem: "not a supported value"},
		{env: "AZP_AGENT_PLATFORM", value: "Linux-x64", problem: "not a supported value"},
		{env: "AZP_ONCE", value: "yes", problem: "not a boolean"},
		{env: "AZP_ONCE", value: "1", problem: "not a boolean"},
		{env: "AZP_ONCE", value: "True", problem: "not a boolean"},
		{env: "AZP_ONCE", value: "on", problem: "not a boolean"},
		{env: "AZP_DEREGISTER", value: "no", problem: "not a boolean"},
		{env: "AZP_DEREGISTER", value: "0", problem: "not a boolean"},
		{env: "AZP_DEREGISTER", value: "FALSE", problem: "not a boolean"},
		{env: "AZP_JOB_TASK_ROLE", value: "y", problem: "not a boolean"},
		{env: "AZP_IDLE_TIMEOUT", value: "30", problem: "not a duration"}, // plain seconds only for AZP_STOP_TIMEOUT
		{env: "AZP_IDLE_TIMEOUT", value: "-1s", problem: "negative"},
		{env: "AZP_IDLE_TIMEOUT", value: "soon", problem: "not a duration"},
		{env: "AZP_IDLE_TIMEOUT", value: "1d", problem: "not a duration"},
		{env: "AZP_STOP_TIMEOUT", value: "4s", problem: "too short"},
		{env: "AZP_STOP_TIMEOUT", value: "4", problem: "too short"},
		{env: "AZP_STOP_TIMEOUT", value: "4999ms", problem: "too short"},
		{env: "AZP_STOP_TIMEOUT", value: "0", problem: "too short"},
		{env: "AZP_STOP_TIMEOUT", value: "0s", problem: "too short"},
		{env: "AZP_STOP_TIMEOUT", value: "-30s", problem: "negative"},
		{env: "AZP_STOP_TIMEOUT", value: "-30", problem: "negative"},
		{env: "AZP_STOP_TIMEOUT", value: "-5", problem: "negative"},
		{env: "AZP_IDLE_TIMEOUT", value: "-1", problem: "negative"},
		{env: "AZP_STOP_TIMEOUT", value: "1.5", problem: "not a duration"},
		{env: "AZP_STOP_TIMEOUT", value: "thirty", problem: "not a duration"},
		{env: "AZP_RUN_AS", value: "a:b", problem: "not a user"},
		{env: "AZP_RUN_AS", value: "1000:", problem: "not a user"},
		{env: "AZP_RUN_AS", value: ":1000", problem: "not a user"},
		{env: "AZP_RUN_AS", value: "-agent", problem: "not a user"},
		{env: "AZP_RUN_AS", value: "agent:1000", problem: "not a user"},
		{env: "AZP_RUN_AS", value: "1:2:3", problem: "not a user"},
		{env: "AZP_RUN_AS", value: "ag ent", problem: "not a user"},
		{env: "AZP_ECS_TASK_PROTECTION", value: "enabled", problem: "not auto, true or false"},
		{env: "AZP_JOB_TASK_ROLE", value: "True", problem: "not a boolean"},
		{env: "AZP_CA_CERT_FILE", value: filepath.Join(dir, "missing.pem"), problem: "file not found"},
		{env: "AZP_CA_CERT_FILE", value: dir, problem: "file not found"},
		{env: "HTTPS_PROXY", value: "ftp://proxy:21", problem: "not a proxy URL"},
		{env: "HTTPS_PROXY", value: "http://", problem: "not a proxy URL"},
		{env: "HTTPS_PROXY", value: ":3128", problem: "not a proxy URL"},
		{env: "HTTPS_PROXY", value: "http://user:pw1234@[bad", problem: "not a proxy URL", shown: "http://***@[bad"},
		{env: "HTTP_PROXY", value: "socks4://proxy:1080", problem: "not a proxy URL"},
		{env: "HTTPS_PROXY", value: "user:Sup3rSecretPw@127.0.0.1:badport", problem: "not a proxy URL", shown: "***@127.0.0.1:badport"},
		{env: "HTTP_PROXY", value: "user:Sup3rSecretPw@[bad", problem: "not a proxy URL", shown: "***@[bad"},
		{env: "HTTP_PROXY", value: "us:er:pa://ss@proxy/x", problem: "not a proxy URL", shown: "***@proxy/x"},
		{env: "AZURE_AUTHORITY_HOST", value: "login.microsoftonline.us", problem: "not an authority URL"},
		{env: "AZURE_AUTHORITY_HOST", value: "ftp://login.microsoftonline.us", problem: "not an authority URL"},
		{env: "AZURE_AUTHORITY_HOST", value: "https://u:pw5678@login.microsoftonline.us/", problem: "not an authority URL", shown: "https://***@login.microsoftonline.us/"},
		{env: "AZP_LOG_FORMAT", value: "xml", problem: "not a supported value"},
		{env: "AZP_LOG_FORMAT", value: "JSON", problem: "not a supported value"},
		{env: "AZP_LOG_LEVEL", value: "verbose", problem: "not a supported value"},
		{env: "AZP_LOG_LEVEL", value: "INFO", problem: "not a supported value"},
		{env: "AZP_LOG_LEVEL", value: "warning", problem: "not a supported value"},
	}
}

// freeForm are the settings that take any text: nothing about them can be invalid on its own
// (credential combinations are TestCredentials' business).
var freeForm = []string{"AZP_TOKEN", "AZP_TOKEN_FILE", "AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_TENANTID", "AZP_SECRET_ID", "AZP_POOL", "AZP_WORK", "NO_PROXY"}

func TestInvalid(t *testing.T) {
	cases := invalidInputs(t)
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.env] = true
	}
	for _, d := range Definitions() {
		if !covered[d.Env] && !slices.Contains(freeForm, d.Env) {
			t.Errorf("no invalid case for %s", d.Env)
		}
	}
	for _, c := range cases {
		d, _ := Lookup(c.env)
		for _, via := range []string{"env", "flag", "secret"} {
			if via == "secret" && !d.FromSecret {
				continue
			}
			t.Run(c.env+"/"+via+"/"+c.value, func(t *testing.T) {
				l := layers{env: base(c.env)}
				switch via {
				case "env":
					l.env[c.env] = c.value
				case "flag":
					l.flags = map[string]string{c.env: c.value}
				case "secret":
					l.secret = map[string]string{c.env: c.value}
				}
				s, err := l.resolve(t)
				if err == nil {
					t.Fatalf("Resolve accepted %s=%q: %+v", c.env, c.value, s)
				}
				if code := exit.Code(err); code != exit.Usage {
					t.Errorf("exit code %d, want %d", code, exit.Usage)
				}
				if !errors.Is(err, exit.ErrConfig) {
					t.Error("error does not match exit.ErrConfig")
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("not a *config.Error: %v", err)
				}
				shown := c.value
				if c.shown != "" {
					shown = c.shown
				}
				if strings.TrimSpace(shown) != shown {
					shown = strings.TrimSpace(shown)
				}
				if e.Setting != c.env || e.Flag != d.Flag || e.Value != shown {
					t.Errorf("Error{Setting %q, Flag %q, Value %q}, want {%q, %q, %q}", e.Setting, e.Flag, e.Value, c.env, d.Flag, shown)
				}
				if !strings.Contains(e.Problem, c.problem) {
					t.Errorf("problem %q, want it to contain %q", e.Problem, c.problem)
				}
				if e.Fix == "" {
					t.Error("the error names no fix")
				}
				msg := err.Error()
				for _, part := range []string{c.env, "--" + d.Flag, strconv.Quote(shown), e.Fix} {
					if !strings.Contains(msg, part) {
						t.Errorf("message %q lacks %q", msg, part)
					}
				}
			})
		}
	}
}

func TestInvalidReportsEverySetting(t *testing.T) {
	_, err := layers{env: map[string]string{
		"AZP_ONCE": "yes", "AZP_STOP_TIMEOUT": "1s", "AZP_LOG_LEVEL": "loud",
	}}.resolve(t)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"AZP_URL", "AZP_ONCE", "AZP_STOP_TIMEOUT", "AZP_LOG_LEVEL", "credentials: none found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s:\n%v", want, err)
		}
	}
	if exit.Code(err) != exit.Usage {
		t.Errorf("exit code %d", exit.Code(err))
	}
}

func TestStopTimeoutForms(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"5": 5 * time.Second, "5s": 5 * time.Second, "30": 30 * time.Second, "120": 2 * time.Minute,
		"2m": 2 * time.Minute, "1m30s": 90 * time.Second, "5000ms": 5 * time.Second, " 60 ": time.Minute,
	} {
		s, err := layers{env: with(base(""), "AZP_STOP_TIMEOUT", in)}.resolve(t)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if s.StopTimeout != want {
			t.Errorf("%q = %v, want %v", in, s.StopTimeout, want)
		}
	}
}

func TestCredentials(t *testing.T) {
	const url = "https://dev.azure.com/acme"
	sp := map[string]string{"AZP_URL": url, "AZP_CLIENTID": "cid", "AZP_CLIENTSECRET": "csecret", "AZP_TENANTID": "tid"}
	type want struct {
		source    TokenSource
		token     string
		file      string
		sp        bool
		spSecret  bool
		warning   string   // part of the only warning
		err       string   // part of the error
		seen      []string // CredentialError.Seen
		missing   []string // CredentialError.Missing
		noWarning bool
	}
	cases := []struct {
		name string
		l    layers
		want want
	}{
		{"token env", layers{env: map[string]string{"AZP_URL": url, "AZP_TOKEN": "tok1"}}, want{source: TokenValue, token: "tok1"}},
		{"token flag", layers{flags: map[string]string{"AZP_TOKEN": "tok1"}, env: map[string]string{"AZP_URL": url}}, want{source: TokenValue, token: "tok1"}},
		{"token file", layers{env: map[string]string{"AZP_URL": url, "AZP_TOKEN_FILE": "/run/secrets/pat"}}, want{source: TokenFile, file: "/run/secrets/pat"}},
		{"token file flag", layers{flags: map[string]string{"AZP_TOKEN_FILE": "/f"}, env: map[string]string{"AZP_URL": url}}, want{source: TokenFile, file: "/f"}},
		{"secret token key", layers{env: map[string]string{"AZP_URL": url}, secret: map[string]string{"AZP_TOKEN": "stok"}}, want{source: TokenFromSecret, token: "stok"}},
		{"plain secret", layers{env: map[string]string{"AZP_URL": url, "AZP_SECRET_ID": "plain"}}, want{source: TokenFromSecret, token: "tok-plain"}},
		{"sp env", layers{env: sp}, want{sp: true}},
		{"sp flags", layers{flags: map[string]string{"AZP_CLIENTID": "cid", "AZP_CLIENTSECRET": "csecret", "AZP_TENANTID": "tid"}, env: map[string]string{"AZP_URL": url}}, want{sp: true}},
		{"sp secret", layers{env: map[string]string{"AZP_URL": url}, secret: map[string]string{"AZP_CLIENTID": "cid", "AZP_CLIENTSECRET": "csecret", "AZP_TENANTID": "tid"}}, want{sp: true, spSecret: true}},
		{"sp mixed", layers{flags: map[string]string{"AZP_CLIENTID": "cid"}, env: map[string]string{"AZP_URL": url, "AZP_TENANTID": "tid"}, secret: map[string]string{"AZP_CLIENTSECRET": "csecret"}}, want{sp: true, spSecret: true}},

		// Several PAT sources: the first of --token/AZP_TOKEN, AZP_TOKEN_FILE, the secret's AZP_TOKEN.
		{"token+file+secret", layers{flags: map[string]string{"AZP_TOKEN": "tok1"}, env: map[string]string{"AZP_URL": url, "AZP_TOKEN_FILE": "/f"}, secret: map[string]string{"AZP_TOKEN": "stok"}},
			want{source: TokenValue, token: "tok1", warning: "using --token, ignoring AZP_TOKEN_FILE, the secret's AZP_TOKEN"}},
		{"env token+file", layers{env: map[string]string{"AZP_URL": url, "AZP_TOKEN": "tok1", "AZP_TOKEN_FILE": "/f"}},
			want{source: TokenValue, token: "tok1", warning: "using AZP_TOKEN, ignoring AZP_TOKEN_FILE"}},
		{"file+secret", layers{env: map[string]string{"AZP_URL": url, "AZP_TOKEN_FILE": "/f"}, secret: map[string]string{"AZP_TOKEN": "stok"}},
			want{source: TokenFile, file: "/f", warning: "using AZP_TOKEN_FILE, ignoring the secret's AZP_TOKEN"}},
		{"flag file+secret", layers{flags: map[string]string{"AZP_TOKEN_FILE": "/f"}, env: map[string]string{"AZP_URL": url}, secret: map[string]string{"AZP_TOKEN": "stok"}},
			want{source: TokenFile, file: "/f", warning: "using --token-file, ignoring the secret's AZP_TOKEN"}},
		{"env token+plain secret", layers{env: map[string]string{"AZP_URL": url, "AZP_TOKEN": "tok1", "AZP_SECRET_ID": "plain"}},
			want{source: TokenValue, token: "tok1", warning: "using AZP_TOKEN, ignoring the secret's AZP_TOKEN"}},
		{"flag and env token: plain precedence", layers{flags: map[string]string{"AZP_TOKEN": "tok1"}, env: map[string]string{"AZP_URL": url, "AZP_TOKEN": "tok2"}},
			want{source: TokenValue, token: "tok1", noWarning: true}},
		{"empty token env is unset", layers{env: map[string]string{"AZP_URL": url, "AZP_TOKEN": "", "AZP_TOKEN_FILE": "/f"}},
			want{source: TokenFile, file: "/f", noWarning: true}},

		// Configuration errors, naming the sources they saw.
		{"none", layers{env: map[string]string{"AZP_URL": url}}, want{err: "none found"}},
		{"none blank", layers{env: map[string]string{"AZP_URL": url, "AZP_TOKEN": " ", "AZP_CLIENTID": ""}}, want{err: "none found"}},
		{"none in secret", layers{env: map[string]string{"AZP_URL": url}, secret: map[string]string{"AZP_POOL": "p"}}, want{err: `the secret "sid" holds neither`}},
		{"token env + sp env", layers{env: map[string]string{"AZP_URL": url, "AZP_TOKEN": "tok1", "AZP_CLIENTID": "cid"}},
			want{err: "both", seen: []string{"AZP_TOKEN", "AZP_CLIENTID"}}},
		{"token file flag + secret sp", layers{flags: map[string]string{"AZP_TOKEN_FILE": "/f"}, env: map[string]string{"AZP_URL": url}, secret: map[string]string{"AZP_CLIENTSECRET": "csecret"}},
			want{err: "both", seen: []string{"--token-file", "the secret's AZP_CLIENTSECRET"}}},
		{"secret token + env sp", layers{env: with(sp, "AZP_URL", url), secret: map[string]string{"AZP_TOKEN": "stok"}},
			want{err: "both", seen: []string{"the secret's AZP_TOKEN", "AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_TENANTID"}}},
		{"plain secret + flag sp", layers{flags: map[string]string{"AZP_TENANTID": "tid"}, env: map[string]string{"AZP_URL": url, "AZP_SECRET_ID": "plain"}},
			want{err: "both", seen: []string{"the secret's AZP_TOKEN", "--tenant-id"}}},
		{"all pat sources + sp", layers{flags: map[string]string{"AZP_TOKEN": "tok1"}, env: map[string]string{"AZP_URL": url, "AZP_TOKEN_FILE": "/f", "AZP_CLIENTID": "cid"}, secret: map[string]string{"AZP_TOKEN": "stok"}},
			want{err: "both", seen: []string{"--token", "AZP_TOKEN_FILE", "the secret's AZP_TOKEN", "AZP_CLIENTID"}}},
		{"partial sp env", layers{env: map[string]string{"AZP_URL": url, "AZP_CLIENTID": "cid", "AZP_TENANTID": "tid"}},
			want{err: "incomplete", seen: []string{"AZP_CLIENTID", "AZP_TENANTID"}, missing: []string{"AZP_CLIENTSECRET"}}},
		{"partial sp flag+secret", layers{flags: map[string]string{"AZP_CLIENTID": "cid"}, env: map[string]string{"AZP_URL": url}, secret: map[string]string{"AZP_TENANTID": "tid"}},
			want{err: "incomplete", seen: []string{"--client-id", "the secret's AZP_TENANTID"}, missing: []string{"AZP_CLIENTSECRET"}}},
		{"partial sp secret only", layers{env: map[string]string{"AZP_URL": url}, secret: map[string]string{"AZP_CLIENTSECRET": "csecret"}},
			want{err: "incomplete", seen: []string{"the secret's AZP_CLIENTSECRET"}, missing: []string{"AZP_CLIENTID", "AZP_TENANTID"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := c.l.resolve(t)
			if c.want.err != "" {
				if err == nil {
					t.Fatalf("accepted: %+v", s)
				}
				if exit.Code(err) != exit.Usage {
					t.Errorf("exit code %d", exit.Code(err))
				}
				var ce *CredentialError
				if !errors.As(err, &ce) {
					t.Fatalf("not a *CredentialError: %v", err)
				}
				if !strings.Contains(err.Error(), c.want.err) || ce.Fix == "" {
					t.Errorf("error %q, want %q and a fix", err, c.want.err)
				}
				if !slices.Equal(ce.Seen, c.want.seen) || !slices.Equal(ce.Missing, c.want.missing) {
					t.Errorf("seen %q missing %q, want %q %q", ce.Seen, ce.Missing, c.want.seen, c.want.missing)
				}
				for _, v := range []string{"tok1", "stok", "csecret", "tok-plain"} {
					if strings.Contains(err.Error(), v) {
						t.Errorf("error shows the value %q: %v", v, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.IsServicePrincipal() != c.want.sp || s.SPFromSecret != c.want.spSecret {
				t.Errorf("sp %v fromSecret %v, want %v %v", s.IsServicePrincipal(), s.SPFromSecret, c.want.sp, c.want.spSecret)
			}
			if c.want.sp {
				if s.ClientID != "cid" || s.ClientSecret != "csecret" || s.TenantID != "tid" || s.Token != "" || s.TokenFile != "" {
					t.Errorf("sp fields: %+v", s)
				}
				if !slices.Contains(s.Secrets, "csecret") {
					t.Errorf("client secret not in Secrets: %q", s.Secrets)
				}
			} else if s.TokenSource != c.want.source || s.Token != c.want.token || s.TokenFile != c.want.file {
				t.Errorf("source %v token %q file %q, want %v %q %q", s.TokenSource, s.Token, s.TokenFile, c.want.source, c.want.token, c.want.file)
			}
			if s.Token != "" && !slices.Contains(s.Secrets, s.Token) {
				t.Errorf("token not in Secrets: %q", s.Secrets)
			}
			switch {
			case c.want.warning != "":
				if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], c.want.warning) {
					t.Errorf("warnings %q, want one with %q", s.Warnings, c.want.warning)
				}
			case len(s.Warnings) != 0:
				t.Errorf("unexpected warnings %q", s.Warnings)
			}
		})
	}
}

// TestShadowedTokensAreMasked: a token source that loses is still a secret the logs must hide.
func TestShadowedTokensAreMasked(t *testing.T) {
	s, err := layers{flags: map[string]string{"AZP_TOKEN": "flagtoken"}, env: map[string]string{"AZP_URL": "https://dev.azure.com/a", "AZP_TOKEN": "envtoken"}, secret: map[string]string{"AZP_TOKEN": "secrettoken"}}.resolve(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"flagtoken", "secrettoken"} {
		if !slices.Contains(s.Secrets, v) {
			t.Errorf("Secrets %q lack %q", s.Secrets, v)
		}
	}
}

func TestSecretJSON(t *testing.T) {
	t.Run("unknown keys warn", func(t *testing.T) {
		vals, warnings, err := ParseSecret(`{"AZP_TOKEN":"tok1","AZP_POOL":"p","azp_url":"https://x","Extra":1,"AZP_AGENT_NAME":"n"}`)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(vals, map[string]string{"AZP_TOKEN": "tok1", "AZP_POOL": "p"}) {
			t.Errorf("values %q", vals)
		}
		if len(warnings) != 3 {
			t.Fatalf("warnings %q, want 3", warnings)
		}
		if !slices.IsSorted(warnings) {
			t.Errorf("warnings not sorted: %q", warnings)
		}
		all := strings.Join(warnings, "\n")
		for _, want := range []string{`"Extra"`, `"AZP_AGENT_NAME"`, `"azp_url"`, "did you mean AZP_URL?"} {
			if !strings.Contains(all, want) {
				t.Errorf("warnings lack %s: %q", want, warnings)
			}
		}
	})
	t.Run("warnings reach Settings", func(t *testing.T) {
		s, err := layers{env: map[string]string{"AZP_URL": "https://dev.azure.com/a"}, secret: map[string]string{"AZP_TOKEN": "tok1", "TOKEN": "x"}}.resolve(t)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], `"TOKEN"`) {
			t.Errorf("warnings %q", s.Warnings)
		}
	})
	for name, c := range map[string]struct {
		text string
		want map[string]string
		err  string
	}{
		"plain":          {text: " tok1\n", want: map[string]string{"AZP_TOKEN": "tok1"}},
		"null and blank": {text: `{"AZP_TOKEN":null,"AZP_POOL":"  ","AZP_URL":" https://x "}`, want: map[string]string{"AZP_URL": "https://x"}},
		"empty":          {text: " \n", err: "the secret is empty"},
		"bad json":       {text: `{"AZP_TOKEN": "tok1",`, err: "not valid JSON"},
		"not strings":    {text: `{"AZP_TOKEN": ["tok1"]}`, err: "AZP_TOKEN must be a string"},
		"number":         {text: `{"AZP_POOL": 5}`, err: "AZP_POOL must be a string"},
	} {
		t.Run(name, func(t *testing.T) {
			vals, _, err := ParseSecret(c.text)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				if exit.Code(err) != exit.Usage {
					t.Errorf("exit code %d", exit.Code(err))
				}
				if strings.Contains(err.Error(), "tok1") {
					t.Errorf("error shows the token: %v", err)
				}
				return
			}
			if err != nil || !maps.Equal(vals, c.want) {
				t.Errorf("ParseSecret = %q, %v; want %q", vals, err, c.want)
			}
		})
	}
}

func TestSecretFetch(t *testing.T) {
	env := mapEnv(map[string]string{"AZP_URL": "https://dev.azure.com/a", "AZP_SECRET_ID": "arn:x"})
	t.Run("no fetcher", func(t *testing.T) {
		_, err := Resolve(context.Background(), Options{Env: env})
		var e *Error
		if !errors.As(err, &e) || e.Setting != "AZP_SECRET_ID" || exit.Code(err) != exit.Usage {
			t.Errorf("err %v", err)
		}
	})
	t.Run("fetch error keeps its kind", func(t *testing.T) {
		denied := exit.Auth(errors.New("AccessDeniedException"))
		_, err := Resolve(context.Background(), Options{Env: env, Secret: func(context.Context, string) (string, error) { return "", denied }})
		if !errors.Is(err, denied) || exit.Code(err) != exit.Denied {
			t.Errorf("err %v code %d", err, exit.Code(err))
		}
	})
	t.Run("id passed on, flag over env", func(t *testing.T) {
		var got string
		_, err := Resolve(context.Background(), Options{
			Flags: map[string]string{"AZP_SECRET_ID": "from-flag"},
			Env:   env,
			Secret: func(_ context.Context, id string) (string, error) {
				got = id
				return "tok1234", nil
			},
		})
		if err != nil || got != "from-flag" {
			t.Errorf("id %q err %v", got, err)
		}
	})
	t.Run("bad secret names the ID", func(t *testing.T) {
		_, err := Resolve(context.Background(), Options{Env: env, Secret: func(context.Context, string) (string, error) { return "{", nil }})
		if err == nil || !strings.Contains(err.Error(), `AZP_SECRET_ID "arn:x"`) || exit.Code(err) != exit.Usage {
			t.Errorf("err %v", err)
		}
	})
}

// TestErrorsNeverShowSecrets resolves bad inputs that carry secret values in every place one can
// hide and asserts that no form of them reaches the error text.
func TestErrorsNeverShowSecrets(t *testing.T) {
	for _, secret := range []string{"s3cr3t-PAT-value-0123456789", `pa"ss\w<o>&rd/x:y@z%`} {
		const u = "https://dev.azure.com/acme"
		cases := map[string]layers{
			"token pasted into a version":    {env: map[string]string{"AZP_URL": u, "AZP_TOKEN": secret, "AZP_AGENT_VERSION": secret}},
			"flag token in platform":         {flags: map[string]string{"AZP_TOKEN": secret, "AZP_AGENT_PLATFORM": secret}, env: map[string]string{"AZP_URL": u}},
			"client secret in agent name":    {env: map[string]string{"AZP_URL": u, "AZP_CLIENTSECRET": secret, "AZP_AGENT_NAME": secret + "/x"}},
			"secret token in log level":      {env: map[string]string{"AZP_URL": u, "AZP_LOG_LEVEL": secret}, secret: map[string]string{"AZP_TOKEN": secret}},
			"secret client secret in prefix": {env: map[string]string{"AZP_URL": u, "AZP_AGENT_NAME_PREFIX": secret + "*"}, secret: map[string]string{"AZP_CLIENTSECRET": secret}},
			"token in URL user":              {env: map[string]string{"AZP_URL": "https://" + esc(secret) + "@dev.azure.com/acme"}},
			"token in URL password":          {env: map[string]string{"AZP_URL": "https://u:" + esc(secret) + "@dev.azure.com/acme", "AZP_TOKEN": secret}},
			"proxy password, bad proxy":      {env: map[string]string{"AZP_URL": u, "AZP_TOKEN": "tok12345", "HTTPS_PROXY": "http://u:" + esc(secret) + "@[bad"}},
			"proxy password, raw":            {env: map[string]string{"AZP_URL": u, "AZP_TOKEN": "tok12345", "HTTP_PROXY": "ftp://u:" + secret + "@proxy"}},
			"proxy password, no scheme":      {env: map[string]string{"AZP_URL": u, "AZP_TOKEN": "tok12345", "HTTPS_PROXY": "u:" + secret + "@127.0.0.1:badport"}},
			"token in URL user, no scheme":   {env: map[string]string{"AZP_URL": esc(secret) + "@dev.azure.com/acme"}},
			"token in URL query":             {env: map[string]string{"AZP_URL": u + "?token=" + secret}},
			"token in URL fragment":          {env: map[string]string{"AZP_URL": u + "#" + secret}},
			"pat and sp":                     {env: map[string]string{"AZP_URL": u, "AZP_TOKEN": secret, "AZP_CLIENTSECRET": secret}},
			"partial sp":                     {env: map[string]string{"AZP_URL": u, "AZP_CLIENTSECRET": secret, "AZP_CLIENTID": "cid"}},
			"secret pat and sp":              {env: map[string]string{"AZP_URL": u}, secret: map[string]string{"AZP_TOKEN": secret, "AZP_TENANTID": "tid", "AZP_STOP_TIMEOUT": secret}},
		}
		for name, l := range cases {
			t.Run(name, func(t *testing.T) {
				_, err := l.resolve(t)
				if err == nil {
					t.Fatal("accepted")
				}
				assertNoSecret(t, err, secret)
			})
		}
		t.Run("bad secret JSON", func(t *testing.T) {
			for _, text := range []string{
				`{"AZP_TOKEN": ` + strconv.Quote(secret) + `,`,
				`{"AZP_TOKEN": ` + strconv.Quote(secret) + `, "AZP_POOL": 5}`,
				`{"AZP_TOKEN": [` + strconv.Quote(secret) + `]}`,
				`{` + strconv.Quote(secret),
				`{"AZP_TOKEN": ` + secret + `}`,
			} {
				_, err := Resolve(context.Background(), Options{
					Env:    mapEnv(map[string]string{"AZP_URL": u, "AZP_SECRET_ID": "sid"}),
					Secret: func(context.Context, string) (string, error) { return text, nil },
				})
				if err == nil {
					t.Fatalf("accepted %s", text)
				}
				assertNoSecret(t, err, secret)
			}
		})
	}
}

func assertNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	q := strconv.Quote(secret)
	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		for _, form := range []string{secret, q[1 : len(q)-1], esc(secret)} {
			if strings.Contains(text, form) {
				t.Errorf("error text shows the secret (%q):\n%s", form, text)
			}
		}
	}
}

func esc(v string) string { return strings.NewReplacer("%", "%25", "@", "%40").Replace(v) }

func TestProxy(t *testing.T) {
	b := base("")
	t.Run("lower-case aliases", func(t *testing.T) {
		s, err := layers{env: with(with(with(b, "https_proxy", "http://lower:1"), "http_proxy", "http://lower:2"), "no_proxy", "lower")}.resolve(t)
		if err != nil {
			t.Fatal(err)
		}
		if s.HTTPSProxy != "http://lower:1" || s.HTTPProxy != "http://lower:2" || s.NoProxy != "lower" || s.Sources["HTTPS_PROXY"] != "env" {
			t.Errorf("%q %q %q", s.HTTPSProxy, s.HTTPProxy, s.NoProxy)
		}
		s, err = layers{env: with(with(b, "https_proxy", "http://lower:1"), "HTTPS_PROXY", "http://upper:1")}.resolve(t)
		if err != nil || s.HTTPSProxy != "http://upper:1" {
			t.Errorf("upper case should win: %v %v", s, err)
		}
	})
	t.Run("password is a secret", func(t *testing.T) {
		s, err := layers{env: with(b, "HTTPS_PROXY", "http://user:pr0xy-pass@proxy:3128")}.resolve(t)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(s.Secrets, "pr0xy-pass") || slices.Contains(s.Secrets, "user") {
			t.Errorf("Secrets %q", s.Secrets)
		}
		if s.HTTPSProxy != "http://user:pr0xy-pass@proxy:3128" {
			t.Errorf("the proxy URL must reach the HTTP client whole: %q", s.HTTPSProxy)
		}
	})
	// Every form the validation accepts registers its password (not a bare user name), as written
	// and decoded.
	for _, c := range []struct {
		env, value string
		want       []string
	}{
		{"HTTPS_PROXY", "user:Sup3rSecretPw@127.0.0.1:3128", []string{"Sup3rSecretPw"}},
		{"HTTP_PROXY", "user:Sup3rSecretPw@proxy", []string{"Sup3rSecretPw"}},
		{"HTTPS_PROXY", "https://user:Sup3rSecretPw@proxy:3128", []string{"Sup3rSecretPw"}},
		{"HTTPS_PROXY", "socks5h://user:Sup3rSecretPw@proxy:1080", []string{"Sup3rSecretPw"}},
		{"HTTPS_PROXY", "user:p%21ss%40word@proxy:3128", []string{"p!ss@word", "p%21ss%40word"}},
		{"HTTPS_PROXY", "user@proxy:3128", nil},
		{"HTTP_PROXY", "http://user@proxy:3128", nil},
	} {
		t.Run("password/"+c.value, func(t *testing.T) {
			s, err := layers{env: with(b, c.env, c.value)}.resolve(t)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !slices.Contains(s.Secrets, w) {
					t.Errorf("Secrets %q lack %q", s.Secrets, w)
				}
			}
			if slices.Contains(s.Secrets, "user") {
				t.Errorf("a bare user name is not a secret: %q", s.Secrets)
			}
		})
	}
}

func TestFlagSet(t *testing.T) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	given := FlagSet(fs)
	for _, d := range Definitions() {
		f := fs.Lookup(d.Flag)
		if f == nil {
			t.Errorf("no flag --%s", d.Flag)
			continue
		}
		if !strings.Contains(f.Usage, d.Env) {
			t.Errorf("--%s usage does not name %s", d.Flag, d.Env)
		}
		if name, _ := flag.UnquoteUsage(f); name != "value" && name != "" {
			t.Errorf("--%s: a back-quoted word in the usage becomes its placeholder %q", d.Flag, name)
		}
	}
	if err := fs.Parse([]string{"--once", "--token=tok12345", "--pool", "Linux", "--stop-timeout", "60", "rest"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"AZP_ONCE": "true", "AZP_TOKEN": "tok12345", "AZP_POOL": "Linux", "AZP_STOP_TIMEOUT": "60"}
	if !maps.Equal(given(), want) || !slices.Equal(fs.Args(), []string{"rest"}) {
		t.Errorf("given %q args %q", given(), fs.Args())
	}
	if v := fs.Lookup("token").Value.String(); strings.Contains(v, "tok12345") {
		t.Errorf("the token flag's String shows the token: %q", v)
	}
	var out strings.Builder
	fs.SetOutput(&out)
	fs.PrintDefaults()
	if strings.Contains(out.String(), "tok12345") {
		t.Error("PrintDefaults shows the token")
	}

	s, err := Resolve(context.Background(), Options{Flags: given(), Env: mapEnv(map[string]string{"AZP_URL": "https://dev.azure.com/a"})})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Once || s.Pool != "Linux" || s.StopTimeout != time.Minute || s.Token != "tok12345" {
		t.Errorf("%+v", s)
	}
}

func TestHelp(t *testing.T) {
	out := Help()
	for _, d := range Definitions() {
		if !strings.Contains(out, "--"+d.Flag+" ") || !strings.Contains(out, d.Env) || !strings.Contains(out, d.Usage) {
			t.Errorf("help lacks %s / --%s / its usage", d.Env, d.Flag)
		}
		def := d.Default
		if def == "" {
			def = "-"
		}
		if !strings.Contains(out, "(default "+def+")") {
			t.Errorf("help lacks the default of %s (%q)", d.Env, def)
		}
	}
}

// TestDefinitions pins the table to the contract's list of settings.
func TestDefinitions(t *testing.T) {
	contract := []string{
		"AZP_URL", "AZP_TOKEN", "AZP_TOKEN_FILE", "AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_TENANTID", "AZP_SECRET_ID",
		"AZP_POOL", "AZP_AGENT_NAME", "AZP_AGENT_NAME_PREFIX", "AZP_WORK", "AZP_WORK_SHARED", "AZP_WORK_MIN_FREE",
		"AZP_TOOLS_DIR", "AZP_AGENT_DIR", "AZP_AGENT_VERSION", "AZP_AGENT_PLATFORM", "AZP_AGENT_CACHE", "AZP_ONCE",
		"AZP_IDLE_TIMEOUT", "AZP_STOP_TIMEOUT", "AZP_DEREGISTER", "AZP_RUN_AS", "AZP_ECS_TASK_PROTECTION",
		"AZP_JOB_TASK_ROLE", "AZP_CA_CERT_FILE", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "AZURE_AUTHORITY_HOST",
		"AZP_LOG_FORMAT", "AZP_LOG_LEVEL", "AZP_STATE_DIR",
	}
	var envs, flags []string
	for _, d := range Definitions() {
		envs = append(envs, d.Env)
		flags = append(flags, d.Flag)
		if d.Flag == "" || d.Usage == "" || strings.Contains(d.Usage, "`") {
			t.Errorf("%s: needs a flag and a usage without back quotes", d.Env)
		}
	}
	if !slices.Equal(envs, contract) {
		t.Errorf("definitions %q\nwant (contract order) %q", envs, contract)
	}
	slices.Sort(flags)
	if len(slices.Compact(flags)) != len(contract) {
		t.Error("duplicate flag names")
	}
	if got := SecretKeys(); !slices.Equal(got, []string{"AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_POOL", "AZP_TENANTID", "AZP_TOKEN", "AZP_URL"}) {
		t.Errorf("SecretKeys = %q", got)
	}
	for _, env := range CredentialEnv() {
		if _, ok := Lookup(env); !ok {
			t.Errorf("CredentialEnv names unknown %s", env)
		}
	}
	for _, env := range []string{"AZP_TOKEN", "AZP_CLIENTSECRET"} {
		if d, _ := Lookup(env); !d.Secret {
			t.Errorf("%s is not marked secret", env)
		}
	}
	if _, ok := Lookup("AZP_NOPE"); ok {
		t.Error("Lookup found an unknown variable")
	}
	Definitions()[0].Env = "changed"
	if Definitions()[0].Env != "AZP_URL" {
		t.Error("Definitions returns the table itself")
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "2GiB": 2 << 30, "2Gi": 2 << 30, "2G": 2e9, "2GB": 2e9, "500MB": 5e8,
		"1.5KiB": 1536, "1 TiB": 1 << 40, "10B": 10, "7KB": 7000,
	} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1PB", "1kb", "8388608TiB", "1e9"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
}

func TestSettingsHelpers(t *testing.T) {
	if !Auto.Resolve(true) || Auto.Resolve(false) || !On.Resolve(false) || Off.Resolve(true) {
		t.Error("Tristate.Resolve")
	}
	s := &Settings{AgentDir: "/azp/agent", Work: "_work"}
	if s.WorkPath() != "/azp/agent/_work" {
		t.Error(s.WorkPath())
	}
	s.Work = "/mnt/efs/work/"
	if s.WorkPath() != "/mnt/efs/work" {
		t.Error(s.WorkPath())
	}
	if got := (TokenFile).String(); got != "AZP_TOKEN_FILE" {
		t.Error(got)
	}
}

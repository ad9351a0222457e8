package config

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/redact"
)

// Tristate is a setting that may be left to detection.
type Tristate int

const (
	Auto Tristate = iota
	On
	Off
)

func (t Tristate) String() string {
	switch t {
	case On:
		return "true"
	case Off:
		return "false"
	}
	return "auto"
}

// Resolve returns the explicit choice, or auto when the setting was left to detection.
func (t Tristate) Resolve(auto bool) bool {
	switch t {
	case On:
		return true
	case Off:
		return false
	}
	return auto
}

// TokenSource says where the personal access token comes from; later uses read that source again.
type TokenSource int

const (
	NoToken         TokenSource = iota
	TokenValue                  // --token or AZP_TOKEN
	TokenFile                   // AZP_TOKEN_FILE
	TokenFromSecret             // the secret's AZP_TOKEN (or a plain-string secret)
)

func (s TokenSource) String() string {
	switch s {
	case TokenValue:
		return "AZP_TOKEN"
	case TokenFile:
		return "AZP_TOKEN_FILE"
	case TokenFromSecret:
		return "the secret's AZP_TOKEN"
	}
	return "none"
}

// Settings is the validated outcome of resolution.
type Settings struct {
	URL          string
	Token        string // the value at start-up; later uses go back to TokenSource
	TokenFile    string
	TokenSource  TokenSource
	ClientID     string
	ClientSecret string
	TenantID     string
	// SPFromSecret is true when any service-principal field came from the secret, so later uses
	// fetch the secret again.
	SPFromSecret bool
	SecretID     string

	Pool            string
	AgentName       string
	AgentNamePrefix string
	Work            string
	WorkShared      Tristate
	WorkMinFree     int64
	ToolsDir        string
	AgentDir        string
	AgentVersion    string
	AgentPlatform   string
	AgentCache      string

	Once              bool
	IdleTimeout       time.Duration
	StopTimeout       time.Duration
	Deregister        bool
	RunAs             string
	ECSTaskProtection Tristate
	JobTaskRole       bool

	CACertFile    string
	HTTPSProxy    string
	HTTPProxy     string
	NoProxy       string
	AuthorityHost string

	LogFormat string
	LogLevel  string
	StateDir  string

	// Warnings are resolved problems worth a log line (unknown secret keys, shadowed token sources).
	Warnings []string
	// Secrets are the secret values seen during resolution, for the log masker: every token and
	// client secret from any level, including sources that lost to another, and passwords in
	// proxy URLs.
	Secrets []string
	// Sources records where each setting's value came from ("flag", "env", "secret" or
	// "default"), by env name; a setting left unset has no entry.
	Sources map[string]string
}

// IsServicePrincipal reports whether the credential is a service principal rather than a PAT.
func (s *Settings) IsServicePrincipal() bool { return s.TokenSource == NoToken }

// WorkPath is the absolute work directory: AZP_WORK resolved against the agent directory, as the
// agent itself does.
func (s *Settings) WorkPath() string {
	if filepath.IsAbs(s.Work) {
		return filepath.Clean(s.Work)
	}
	return filepath.Join(s.AgentDir, s.Work)
}

// Env looks up an environment variable.
type Env func(string) (string, bool)

// OSEnv is the process environment.
func OSEnv(name string) (string, bool) { return os.LookupEnv(name) }

// SecretFetcher returns the raw SecretString of a Secrets Manager secret.
type SecretFetcher func(ctx context.Context, secretID string) (string, error)

// Error is a validation error that names the setting, the offending value (masked when secret) and
// what to do. It unwraps to exit.ErrConfig.
type Error struct {
	Setting string // environment variable name
	Flag    string
	Value   string // already masked when secret
	Problem string
	Fix     string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Setting)
	if e.Flag != "" {
		b.WriteString(" (--" + e.Flag + ")")
	}
	if e.Value != "" {
		b.WriteString(" = " + strconv.Quote(e.Value))
	}
	b.WriteString(": " + e.Problem)
	if e.Fix != "" {
		b.WriteString(" (" + e.Fix + ")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return exit.ErrConfig }

func invalid(d Definition, value, problem, fix string) *Error {
	if d.Secret && value != "" {
		value = masked
	}
	return &Error{Setting: d.Env, Flag: d.Flag, Value: value, Problem: problem, Fix: fix}
}

// masked stands in for a secret value in error text.
const masked = redact.Mask

// CredentialError is the configuration error of "exactly one kind of credential": none, both
// kinds, or an incomplete service principal. It names where each credential field was found
// (--flag, VARIABLE, the secret's KEY) and never a value. It unwraps to exit.ErrConfig.
type CredentialError struct {
	Problem string   // what is wrong
	Seen    []string // the sources found, e.g. "AZP_TOKEN_FILE", "the secret's AZP_CLIENTID"
	Missing []string // service-principal variables still needed
	Fix     string
}

func (e *CredentialError) Error() string {
	var b strings.Builder
	b.WriteString("credentials: " + e.Problem)
	if len(e.Seen) > 0 {
		b.WriteString("; found " + strings.Join(e.Seen, ", "))
	}
	if len(e.Missing) > 0 {
		b.WriteString("; missing " + strings.Join(e.Missing, ", "))
	}
	if e.Fix != "" {
		b.WriteString(" (" + e.Fix + ")")
	}
	return b.String()
}

func (e *CredentialError) Unwrap() error { return exit.ErrConfig }

// FlagSet registers every setting as a flag on fs and returns the function that reports the values
// given on the command line. Subcommands add their own flags to the same set.
func FlagSet(fs *flag.FlagSet) func() map[string]string {
	given := map[string]string{}
	for _, d := range definitions {
		d := d
		fs.Var(&flagValue{def: d, given: given}, d.Flag, d.Usage+" ["+d.Env+"]")
	}
	return func() map[string]string { return given }
}

type flagValue struct {
	def   Definition
	given map[string]string
}

func (f *flagValue) String() string {
	if f == nil || f.given == nil {
		return ""
	}
	if v := f.given[f.def.Env]; v != "" && f.def.Secret {
		return masked // the flag package prints values in its own messages
	}
	return f.given[f.def.Env]
}
func (f *flagValue) Set(v string) error { f.given[f.def.Env] = v; return nil }

// IsBoolFlag lets `--once` stand alone, as with Microsoft's start.sh (`docker run IMAGE --once`).
func (f *flagValue) IsBoolFlag() bool { return f.def.Kind == KindBool }

// Options are the inputs of Resolve.
type Options struct {
	Flags  map[string]string // by env name, from FlagSet
	Env    Env
	Secret SecretFetcher // required only when AZP_SECRET_ID resolves to a value
}

// Resolve applies flag > environment > secret JSON key > default to every setting and validates.
//
// A value that is empty or only blanks counts as unset at every level (flag, environment, secret
// key), as start.sh's ${AZP_POOL:-Default} does: compose files and task definitions often carry
// `AZP_POOL=` for "not set", and a blank token or pool is never meant literally.
func Resolve(ctx context.Context, o Options) (*Settings, error) {
	if o.Env == nil {
		o.Env = OSEnv
	}
	raw := map[string]string{}
	sources := map[string]string{}
	for _, d := range definitions {
		if v, ok := o.Flags[d.Env]; ok && strings.TrimSpace(v) != "" {
			raw[d.Env], sources[d.Env] = v, "flag"
		} else if v, ok := lookupEnv(o.Env, d); ok {
			raw[d.Env], sources[d.Env] = v, "env"
		}
	}

	s := &Settings{Sources: sources}
	var secretVals map[string]string
	if id := strings.TrimSpace(raw["AZP_SECRET_ID"]); id != "" {
		if o.Secret == nil {
			return nil, exit.Config(invalid(def("AZP_SECRET_ID"), id, "no Secrets Manager client is available to this command", "unset AZP_SECRET_ID or pass the credentials directly"))
		}
		text, err := o.Secret(ctx, id)
		if err != nil {
			// The fetcher marks the kind (not found: configuration; denied: authentication).
			return nil, err
		}
		vals, warnings, err := ParseSecret(text)
		if err != nil {
			return nil, fmt.Errorf("AZP_SECRET_ID %q: %w", id, err)
		}
		secretVals = vals
		s.Warnings = append(s.Warnings, warnings...)
	}

	// The token sources are resolved as a whole below (several may be set, and the first wins with
	// a warning); every other secret key fills what flag and environment left open.
	for _, d := range definitions {
		if !d.FromSecret {
			continue
		}
		if _, set := raw[d.Env]; set {
			continue
		}
		if v, ok := secretVals[d.Env]; ok {
			if d.Env != "AZP_TOKEN" {
				raw[d.Env] = v
			}
			sources[d.Env] = "secret"
		}
	}
	for _, d := range definitions {
		if _, set := sources[d.Env]; !set && d.Default != "" {
			raw[d.Env], sources[d.Env] = d.Default, "default"
		}
	}
	if err := s.fill(raw, secretVals); err != nil {
		return nil, err
	}
	return s, nil
}

// lookupEnv reads a setting's variable, then its aliases; blank values count as unset.
func lookupEnv(env Env, d Definition) (string, bool) {
	for _, name := range append([]string{d.Env}, d.Aliases...) {
		if v, ok := env(name); ok && strings.TrimSpace(v) != "" {
			return v, true
		}
	}
	return "", false
}

// ParseSecret reads a SecretString: a JSON object with the known keys, or a plain token.
func ParseSecret(text string) (values map[string]string, warnings []string, err error) {
	trimmed := strings.TrimSpace(text)
	if !strings.HasPrefix(trimmed, "{") {
		if trimmed == "" {
			return nil, nil, exit.Config(errors.New("the secret is empty (put the token, or a JSON object with AZP_TOKEN, into it)"))
		}
		return map[string]string{"AZP_TOKEN": trimmed}, nil, nil
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(trimmed), &obj); err != nil {
		// The decoder's message can quote the secret's text: keep only the position.
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, nil, exit.Config(fmt.Errorf("the secret is not valid JSON (syntax error at byte %d); store a plain token or a JSON object", se.Offset))
		}
		return nil, nil, exit.Config(errors.New("the secret is not a JSON object of strings; store a plain token or a JSON object"))
	}
	allowed := map[string]bool{}
	for _, k := range SecretKeys() {
		allowed[k] = true
	}
	values = map[string]string{}
	for k, v := range obj {
		if !allowed[k] {
			hint := ""
			if up := strings.ToUpper(strings.TrimSpace(k)); allowed[up] {
				hint = "did you mean " + up + "? "
			}
			warnings = append(warnings, fmt.Sprintf("the secret has an unknown key %q, ignored (%sknown keys: %s)", k, hint, strings.Join(SecretKeys(), ", ")))
			continue
		}
		if v == nil {
			continue // null: unset, like an empty string
		}
		str, ok := v.(string)
		if !ok {
			return nil, nil, exit.Config(fmt.Errorf("the secret's key %s must be a string", k))
		}
		if strings.TrimSpace(str) != "" {
			values[k] = strings.TrimSpace(str)
		}
	}
	sort.Strings(warnings)
	return values, warnings, nil
}

var (
	versionRE   = regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	platforms   = []string{"linux-x64", "linux-arm64", "linux-musl-x64", "linux-musl-arm64"}
	logFormats  = []string{"json", "text"}
	logLevels   = []string{"debug", "info", "warn", "error"}
	agentNameRE = regexp.MustCompile(`^[^"/:<>\\|*?@\x00-\x1f]+$`)
	userNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*\$?$`)
)

var absExamples = map[string]string{
	"AZP_AGENT_DIR":   "/azp/agent",
	"AZP_TOOLS_DIR":   "/mnt/efs/tools",
	"AZP_AGENT_CACHE": "/mnt/efs/agent-cache",
	"AZP_STATE_DIR":   "/tmp/azp-entrypoint",
}

func def(env string) Definition {
	d, ok := Lookup(env)
	if !ok {
		panic("config: no definition for " + env)
	}
	return d
}

// secretValues are every credential value seen during resolution, whether or not it wins, and
// passwords embedded in URLs: they go to the log masker and are scrubbed from error text.
func secretValues(raw, secretVals map[string]string) []string {
	var out []string
	add := func(v string) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	for _, d := range definitions {
		if d.Secret {
			add(raw[d.Env])
			add(secretVals[d.Env])
		}
	}
	for _, env := range urlSettings {
		v := strings.TrimSpace(raw[env])
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if proxy := env == "HTTPS_PROXY" || env == "HTTP_PROXY"; proxy {
			// Parse a proxy as validation (and net/http) does: "user:pw@host:3128" has no scheme,
			// and url.Parse reads "user" as one, so it would find no user-info.
			if pu, perr := parseProxyURL(v); perr == nil {
				u, err = pu, nil
			}
		}
		if err != nil || u.User == nil {
			continue
		}
		// Also the form as written: "p%21ss" is not an escaping the masker derives from "p!ss".
		user, _ := redact.RawUserinfo(v)
		if p, ok := u.User.Password(); ok {
			add(p)
			if _, rp, ok := strings.Cut(user, ":"); ok {
				add(rp)
			}
		} else if env == "AZP_URL" {
			// https://<pat>@dev.azure.com/acme, as git remotes are written: the user name is the
			// token. A proxy's bare user name is not a secret, and masking it would hide words.
			add(u.User.Username())
			add(user)
		}
	}
	// Longest first, so that a secret holding another is scrubbed whole.
	sort.Slice(out, func(i, j int) bool {
		if len(out[i]) != len(out[j]) {
			return len(out[i]) > len(out[j])
		}
		return out[i] < out[j]
	})
	return slices.Compact(out)
}

// scrub replaces every known secret in v, and hides the user-info part of anything URL-shaped.
func scrub(v string, secrets []string) string {
	for _, sec := range secrets {
		v = strings.ReplaceAll(v, sec, masked)
		if e := url.QueryEscape(sec); e != sec {
			v = strings.ReplaceAll(v, e, masked)
		}
		if e := url.PathEscape(sec); e != sec {
			v = strings.ReplaceAll(v, e, masked)
		}
	}
	return redact.Userinfo(v)
}

// urlSettings are the settings whose values are URLs that may carry credentials: their values
// in error text go through redact.URL.
var urlSettings = []string{"AZP_URL", "HTTPS_PROXY", "HTTP_PROXY", "AZURE_AUTHORITY_HOST"}

func (s *Settings) fill(raw, secretVals map[string]string) error {
	var errs []*Error
	str := func(env string) string { return strings.TrimSpace(raw[env]) }
	parse := func(env string, f func(Definition, string) *Error) {
		if err := f(def(env), str(env)); err != nil {
			errs = append(errs, err)
		}
	}
	secrets := secretValues(raw, secretVals)
	s.Secrets = append(s.Secrets, secrets...)

	parse("AZP_URL", func(d Definition, v string) *Error {
		if v == "" {
			return invalid(d, "", "required", "set it to your organisation URL, e.g. https://dev.azure.com/acme")
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return invalid(d, v, "not an organisation URL", "use https://dev.azure.com/<org> or https://<server>/<collection>")
		}
		if u.User != nil {
			return invalid(d, v, "holds credentials", "remove the user-info part and pass the token with AZP_TOKEN, AZP_TOKEN_FILE or AZP_SECRET_ID")
		}
		if strings.EqualFold(u.Hostname(), "dev.azure.com") && strings.Trim(u.Path, "/") == "" {
			return invalid(d, v, "names no organisation", "use https://dev.azure.com/<org>")
		}
		s.URL = strings.TrimRight(v, "/")
		return nil
	})
	s.Pool = str("AZP_POOL")
	s.SecretID = str("AZP_SECRET_ID")
	s.AgentName = str("AZP_AGENT_NAME")
	if s.AgentName != "" && (len(s.AgentName) > 64 || !agentNameRE.MatchString(s.AgentName)) {
		errs = append(errs, invalid(def("AZP_AGENT_NAME"), s.AgentName, "not a valid agent name", "use at most 64 characters without \" / : < > \\ | * ? @"))
	}
	s.AgentNamePrefix = str("AZP_AGENT_NAME_PREFIX")
	if s.AgentNamePrefix != "" && (len(s.AgentNamePrefix) > 40 || !agentNameRE.MatchString(s.AgentNamePrefix)) {
		errs = append(errs, invalid(def("AZP_AGENT_NAME_PREFIX"), s.AgentNamePrefix, "not a valid agent name prefix", "use at most 40 characters without \" / : < > \\ | * ? @"))
	}
	s.Work = str("AZP_WORK")
	s.ToolsDir = str("AZP_TOOLS_DIR")
	s.AgentDir = str("AZP_AGENT_DIR")
	s.AgentCache = str("AZP_AGENT_CACHE")
	s.StateDir = str("AZP_STATE_DIR")
	for _, env := range []string{"AZP_AGENT_DIR", "AZP_TOOLS_DIR", "AZP_AGENT_CACHE", "AZP_STATE_DIR"} {
		if v := str(env); v != "" && !filepath.IsAbs(v) {
			errs = append(errs, invalid(def(env), v, "must be an absolute path", "e.g. "+absExamples[env]))
		}
	}
	s.AgentVersion = strings.TrimPrefix(str("AZP_AGENT_VERSION"), "v")
	if str("AZP_AGENT_VERSION") != "" && !versionRE.MatchString(s.AgentVersion) {
		errs = append(errs, invalid(def("AZP_AGENT_VERSION"), str("AZP_AGENT_VERSION"), "not a version", "use major.minor.patch, e.g. 4.260.0"))
	}
	parse("AZP_AGENT_PLATFORM", func(d Definition, v string) *Error {
		s.AgentPlatform = v
		return oneOf(d, v, platforms)
	})
	parse("AZP_RUN_AS", func(d Definition, v string) *Error {
		s.RunAs = v
		if v == "" || validRunAs(v) {
			return nil
		}
		return invalid(d, v, "not a user", "use a user name, a uid, or uid:gid, e.g. agent or 1000:1000")
	})
	s.CACertFile = str("AZP_CA_CERT_FILE")
	if s.CACertFile != "" {
		if st, err := os.Stat(s.CACertFile); err != nil || st.IsDir() {
			errs = append(errs, invalid(def("AZP_CA_CERT_FILE"), s.CACertFile, "file not found or not readable", "mount the PEM bundle there or unset the setting"))
		}
	}
	s.HTTPSProxy, s.HTTPProxy, s.NoProxy = str("HTTPS_PROXY"), str("HTTP_PROXY"), str("NO_PROXY")
	for _, env := range []string{"HTTPS_PROXY", "HTTP_PROXY"} {
		if v := str(env); v != "" {
			if _, err := parseProxyURL(v); err != nil {
				errs = append(errs, invalid(def(env), v, "not a proxy URL", "use http://host:port, http://user:password@host:port or host:port"))
			}
		}
	}
	s.AuthorityHost = str("AZURE_AUTHORITY_HOST")
	if v := s.AuthorityHost; v != "" {
		if u, err := url.Parse(v); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
			errs = append(errs, invalid(def("AZURE_AUTHORITY_HOST"), v, "not an authority URL", "e.g. https://login.microsoftonline.us/"))
		}
	}
	parse("AZP_LOG_FORMAT", func(d Definition, v string) *Error {
		s.LogFormat = v
		return oneOf(d, v, logFormats)
	})
	parse("AZP_LOG_LEVEL", func(d Definition, v string) *Error {
		s.LogLevel = v
		return oneOf(d, v, logLevels)
	})

	parse("AZP_WORK_SHARED", func(d Definition, v string) (err *Error) { s.WorkShared, err = parseTristate(d, v); return })
	parse("AZP_ECS_TASK_PROTECTION", func(d Definition, v string) (err *Error) { s.ECSTaskProtection, err = parseTristate(d, v); return })
	parse("AZP_ONCE", func(d Definition, v string) (err *Error) { s.Once, err = parseBool(d, v); return })
	parse("AZP_DEREGISTER", func(d Definition, v string) (err *Error) { s.Deregister, err = parseBool(d, v); return })
	parse("AZP_JOB_TASK_ROLE", func(d Definition, v string) (err *Error) { s.JobTaskRole, err = parseBool(d, v); return })
	parse("AZP_WORK_MIN_FREE", func(d Definition, v string) *Error {
		n, err := ParseBytes(v)
		if err != nil {
			return invalid(d, v, err.Error(), "use a size such as 2GiB, 500MB or a number of bytes")
		}
		s.WorkMinFree = n
		return nil
	})
	parse("AZP_IDLE_TIMEOUT", func(d Definition, v string) (err *Error) {
		s.IdleTimeout, err = parseDuration(d, v, false)
		return
	})
	parse("AZP_STOP_TIMEOUT", func(d Definition, v string) (err *Error) {
		s.StopTimeout, err = parseDuration(d, v, true)
		if err == nil && s.StopTimeout < MinStopTimeout {
			return invalid(d, v, "too short: the stop sequence needs at least 5s to disable, stop and deregister the agent", "set it to the platform's grace period (ECS stopTimeout, compose stop_grace_period), at least 5s")
		}
		return
	})

	credErr := s.resolveCredential(raw, secretVals)
	if len(errs) == 0 && credErr == nil {
		return nil
	}
	all := make([]error, 0, len(errs)+1)
	for _, e := range errs {
		e.Value = scrub(e.Value, secrets)
		if slices.Contains(urlSettings, e.Setting) {
			e.Value = redact.URL(e.Value)
		}
		all = append(all, e)
	}
	if credErr != nil {
		all = append(all, credErr)
	}
	return exit.Config(errors.Join(all...))
}

// MinStopTimeout is the shortest AZP_STOP_TIMEOUT accepted: a stop during download or
// configuration must end within 5 s, and disabling and deregistering need about that much.
const MinStopTimeout = 5 * time.Second

func validRunAs(v string) bool {
	isID := func(s string) bool { _, err := strconv.ParseUint(s, 10, 32); return err == nil }
	if uid, gid, ok := strings.Cut(v, ":"); ok {
		return isID(uid) && isID(gid)
	}
	return isID(v) || userNameRE.MatchString(v)
}

// parseProxyURL reads a proxy as Go's net/http does: a URL, or host:port taken as http://.
func parseProxyURL(v string) (*url.URL, error) {
	if v == "" {
		return nil, errors.New("empty")
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" || u.Host == "" {
		// "proxy:3128" parses with scheme "proxy"; net/http retries such values with http://.
		if u2, err2 := url.Parse("http://" + v); err2 == nil && u2.Host != "" && u2.Path == "" {
			u, err = u2, nil
		}
	}
	if err != nil {
		return nil, errors.New("not a URL")
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return nil, fmt.Errorf("scheme %q", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("no host")
	}
	return u, nil
}

// resolveCredential enforces "exactly one kind of credential": a PAT from the first of --token /
// AZP_TOKEN, AZP_TOKEN_FILE and the secret's AZP_TOKEN, or a complete service principal.
func (s *Settings) resolveCredential(raw, secretVals map[string]string) *CredentialError {
	type source struct{ name, value string }
	var pats []source
	if v := strings.TrimSpace(raw["AZP_TOKEN"]); v != "" {
		pats = append(pats, source{s.sourceName("AZP_TOKEN"), v})
	}
	if v := strings.TrimSpace(raw["AZP_TOKEN_FILE"]); v != "" {
		pats = append(pats, source{s.sourceName("AZP_TOKEN_FILE"), v})
	}
	if v, ok := secretVals["AZP_TOKEN"]; ok {
		pats = append(pats, source{"the secret's AZP_TOKEN", v})
	}

	var spSeen, spMissing []string
	for _, k := range []string{"AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_TENANTID"} {
		if strings.TrimSpace(raw[k]) != "" {
			spSeen = append(spSeen, s.sourceName(k))
		} else {
			spMissing = append(spMissing, k)
		}
	}
	names := func(src []source) []string {
		var n []string
		for _, p := range src {
			n = append(n, p.name)
		}
		return n
	}
	noneFix := "set AZP_TOKEN, AZP_TOKEN_FILE or AZP_SECRET_ID for a personal access token, or AZP_CLIENTID, AZP_CLIENTSECRET and AZP_TENANTID for a service principal"
	switch {
	case len(pats) > 0 && len(spSeen) > 0:
		return &CredentialError{
			Problem: "both a personal access token and service-principal fields are set",
			Seen:    append(names(pats), spSeen...),
			Fix:     "keep exactly one kind of credential: remove the token sources or the service-principal fields",
		}
	case len(pats) == 0 && len(spSeen) == 0:
		problem := "none found"
		if s.SecretID != "" {
			problem = fmt.Sprintf("none found (the secret %q holds neither AZP_TOKEN nor service-principal keys)", s.SecretID)
		}
		return &CredentialError{Problem: problem, Fix: noneFix}
	case len(spMissing) > 0 && len(spSeen) > 0:
		return &CredentialError{
			Problem: "incomplete service principal",
			Seen:    spSeen,
			Missing: spMissing,
			Fix:     "a service principal needs AZP_CLIENTID, AZP_CLIENTSECRET and AZP_TENANTID",
		}
	case len(spSeen) > 0:
		s.ClientID, s.ClientSecret, s.TenantID = strings.TrimSpace(raw["AZP_CLIENTID"]), strings.TrimSpace(raw["AZP_CLIENTSECRET"]), strings.TrimSpace(raw["AZP_TENANTID"])
		for _, k := range []string{"AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_TENANTID"} {
			if s.Sources[k] == "secret" {
				s.SPFromSecret = true
			}
		}
		return nil
	}
	if len(pats) > 1 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("several token sources are set; using %s, ignoring %s", pats[0].name, strings.Join(names(pats[1:]), ", ")))
	}
	switch first := pats[0]; {
	case first.name == s.sourceName("AZP_TOKEN_FILE"):
		s.TokenSource, s.TokenFile = TokenFile, first.value
	case strings.HasPrefix(first.name, "the secret"):
		s.TokenSource, s.Token = TokenFromSecret, first.value
	default:
		s.TokenSource, s.Token = TokenValue, first.value
	}
	return nil
}

// sourceName says where a setting's value came from, as a user would look for it.
func (s *Settings) sourceName(env string) string {
	switch s.Sources[env] {
	case "flag":
		return "--" + def(env).Flag
	case "secret":
		return "the secret's " + env
	}
	return env
}

func oneOf(d Definition, v string, allowed []string) *Error {
	if v == "" || slices.Contains(allowed, v) {
		return nil
	}
	return invalid(d, v, "not a supported value", "use one of "+strings.Join(allowed, ", "))
}

// parseBool accepts exactly true and false: "1", "yes" or "True" are more likely a mistake than a
// choice, and start.sh-era scripts that test [ "$X" = "true" ] treat them as false.
func parseBool(d Definition, v string) (bool, *Error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, invalid(d, v, "not a boolean", "use true or false")
}

func parseTristate(d Definition, v string) (Tristate, *Error) {
	switch v {
	case "auto", "":
		return Auto, nil
	case "true":
		return On, nil
	case "false":
		return Off, nil
	}
	return Auto, invalid(d, v, "not auto, true or false", "use auto, true or false")
}

func parseDuration(d Definition, v string, seconds bool) (time.Duration, *Error) {
	fix := "use a Go duration such as 90s, 15m or 1h30m, or 0 for off"
	if seconds {
		fix = "use a Go duration such as 120s or 2m, or a whole number of seconds"
	}
	if v == "0" {
		return 0, nil
	}
	if seconds {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			return time.Duration(n) * time.Second, nil
		}
	}
	dur, err := time.ParseDuration(v)
	if err != nil {
		return 0, invalid(d, v, "not a duration", fix)
	}
	if dur < 0 {
		return 0, invalid(d, v, "negative", fix)
	}
	return dur, nil
}

var bytesRE = regexp.MustCompile(`^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$`)

// ParseBytes reads sizes such as 2GiB (binary), 2GB (decimal) or 1048576.
func ParseBytes(v string) (int64, error) {
	m := bytesRE.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return 0, fmt.Errorf("not a size")
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("not a size")
	}
	unit := strings.TrimSuffix(m[2], "B")
	mult := 1.0
	if unit != "" {
		base := 1000.0
		if strings.HasSuffix(unit, "i") {
			base = 1024
		}
		mult = map[byte]float64{'K': base, 'M': base * base, 'G': base * base * base, 'T': base * base * base * base}[unit[0]]
	}
	// 2^63 itself does not fit an int64; float64 represents it exactly.
	if n*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("too large")
	}
	return int64(n * mult), nil
}

// PrintHelp writes a command's usage and the settings table.
func PrintHelp(w io.Writer, usage string) {
	fmt.Fprintln(w, usage)
	fmt.Fprintln(w, "\nSettings (flag, environment variable, default):")
	fmt.Fprint(w, Help())
}

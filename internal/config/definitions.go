// Package config resolves the entrypoint's settings: flag, then environment, then the JSON keys of
// the Secrets Manager secret, then the default, and validates them into a Settings value.
//
// Every setting is declared once, in the definitions table below; flags, --help, the README's table,
// the deployment files' checks and the parsing all derive from it. A new setting is one row here
// and one Settings field tagged `setting:"ENV"` (or a field of a struct Settings embeds): its Kind
// parses it, its Check validates what is specific to it. This package never performs network I/O
// itself (the secret is fetched through a function the caller passes in) and never logs a secret.
package config

import (
	"sort"
	"strings"
)

// Kind is how a setting's text is parsed.
type Kind int

const (
	KindString   Kind = iota
	KindBool          // true or false, nothing else
	KindTristate      // auto, true or false
	KindDuration      // Go duration
	KindSeconds       // Go duration or a plain number of seconds
	KindBytes         // 2GiB, 500MB, 1048576
	KindURL           // trailing slashes dropped
	KindVersion       // major.minor.patch, a leading "v" dropped
)

// Definition declares one setting.
type Definition struct {
	Env        string // environment variable, e.g. AZP_URL
	Flag       string // flag name without dashes, e.g. url
	Default    string // default as text; empty means none
	Usage      string // one line for --help and the README
	Secret     bool   // value is masked everywhere
	FromSecret bool   // may come from the Secrets Manager secret's JSON keys
	StartSh    bool   // same name and meaning as Microsoft's start.sh
	Kind       Kind
	// Aliases are further environment variables read, in order, when Env is unset (the lower-case
	// proxy variables that curl and Go's net/http also honour).
	Aliases []string
	// Required, when not empty, makes the setting mandatory; it is the fix shown when it is unset.
	Required string
	// Check validates what is specific to this setting once Kind has parsed it; nil accepts
	// whatever Kind accepts.
	Check CheckFunc
}

var definitions = []Definition{
	{Env: "AZP_URL", Flag: "url", Usage: "organisation or collection URL, e.g. https://dev.azure.com/acme (required)", FromSecret: true, StartSh: true, Kind: KindURL, Required: "set it to your organisation URL, e.g. https://dev.azure.com/acme", Check: organisationURL},
	{Env: "AZP_TOKEN", Flag: "token", Usage: "personal access token with Agent Pools (read & manage)", Secret: true, FromSecret: true, StartSh: true},
	{Env: "AZP_TOKEN_FILE", Flag: "token-file", Usage: "file holding the token; read again whenever the token is needed", StartSh: true},
	{Env: "AZP_CLIENTID", Flag: "client-id", Usage: "service principal application (client) ID", FromSecret: true, StartSh: true},
	{Env: "AZP_CLIENTSECRET", Flag: "client-secret", Usage: "service principal client secret", Secret: true, FromSecret: true, StartSh: true},
	{Env: "AZP_TENANTID", Flag: "tenant-id", Usage: "service principal tenant ID", FromSecret: true, StartSh: true},
	{Env: "AZP_SECRET_ID", Flag: "secret-id", Usage: "Secrets Manager secret name or ARN: a plain token, or JSON with AZP_URL, AZP_POOL, AZP_TOKEN, AZP_CLIENTID, AZP_CLIENTSECRET, AZP_TENANTID"},
	{Env: "AZP_POOL", Flag: "pool", Default: "Default", Usage: "agent pool name", FromSecret: true, StartSh: true},
	{Env: "AZP_AGENT_NAME", Flag: "agent-name", Usage: "agent name (default: <prefix><task id>-<container> on ECS, else <prefix><hostname>)", StartSh: true, Check: agentName(64, "agent name")},
	{Env: "AZP_AGENT_NAME_PREFIX", Flag: "agent-name-prefix", Usage: "prefix for the derived agent name", Check: agentName(40, "agent name prefix")},
	{Env: "AZP_WORK", Flag: "work", Default: "_work", Usage: "work directory, relative to the agent directory unless absolute", StartSh: true},
	{Env: "AZP_WORK_SHARED", Flag: "work-shared", Default: "auto", Usage: "true: the work volume is shared with other agents and a slot is leased; auto: true on NFS (EFS)", Kind: KindTristate},
	{Env: "AZP_WORK_MIN_FREE", Flag: "work-min-free", Default: "2GiB", Usage: "warn when the work volume has less free space than this", Kind: KindBytes},
	{Env: "AZP_TOOLS_DIR", Flag: "tools-dir", Usage: "shared tool cache, handed to the agent as AGENT_TOOLSDIRECTORY", Check: absolutePath("/mnt/efs/tools")},
	{Env: "AZP_AGENT_DIR", Flag: "agent-dir", Default: "/azp/agent", Usage: "where the agent package is (baked) or goes (downloaded)", Check: absolutePath("/azp/agent")},
	{Env: "AZP_AGENT_VERSION", Flag: "agent-version", Usage: "pin an agent version (default: the baked one, else the latest)", Kind: KindVersion},
	{Env: "AZP_AGENT_PLATFORM", Flag: "agent-platform", Usage: "linux-x64, linux-arm64, linux-musl-x64 or linux-musl-arm64 (default: detected)", Check: oneOf("linux-x64", "linux-arm64", "linux-musl-x64", "linux-musl-arm64")},
	{Env: "AZP_AGENT_CACHE", Flag: "agent-cache", Usage: "directory (e.g. on EFS) where downloaded packages are kept and shared", Check: absolutePath("/mnt/efs/agent-cache")},
	{Env: "AZP_ONCE", Flag: "once", Default: "false", Usage: "run one job, then deregister and exit 0", Kind: KindBool},
	{Env: "AZP_IDLE_TIMEOUT", Flag: "idle-timeout", Default: "0", Usage: "stop gracefully when no job has started for this long (0: never)", Kind: KindDuration},
	{Env: "AZP_STOP_TIMEOUT", Flag: "stop-timeout", Default: "30s", Usage: "time the platform allows between SIGTERM and SIGKILL (ECS stopTimeout, compose stop_grace_period)", Kind: KindSeconds, Check: stopTimeout},
	{Env: "AZP_DEREGISTER", Flag: "deregister", Default: "true", Usage: "remove the agent from the pool on exit; false keeps the registration", Kind: KindBool},
	{Env: "AZP_RUN_AS", Flag: "run-as", Usage: "user (name, uid or uid:gid) for the agent when started as root (default: agent if the image has it)", Check: runAsUser},
	{Env: "AZP_ECS_TASK_PROTECTION", Flag: "ecs-task-protection", Default: "auto", Usage: "hold ECS task scale-in protection while a job runs (auto: on ECS)", Kind: KindTristate},
	{Env: "AZP_JOB_TASK_ROLE", Flag: "job-task-role", Default: "false", Usage: "pass the AWS credential variables (the ECS task role's, or static keys) on to the agent and its jobs", Kind: KindBool},
	{Env: "AZP_CA_CERT_FILE", Flag: "ca-cert-file", Usage: "extra CA bundle (PEM), trusted by the entrypoint and handed to the agent", Check: readableFile},
	{Env: "HTTPS_PROXY", Flag: "https-proxy", Usage: "proxy for HTTPS requests, honoured by the entrypoint and handed to the agent", Aliases: []string{"https_proxy"}, Check: proxyURL},
	{Env: "HTTP_PROXY", Flag: "http-proxy", Usage: "proxy for HTTP requests, honoured by the entrypoint and handed to the agent", Aliases: []string{"http_proxy"}, Check: proxyURL},
	{Env: "NO_PROXY", Flag: "no-proxy", Usage: "hosts that bypass the proxy", Aliases: []string{"no_proxy"}},
	{Env: "AZURE_AUTHORITY_HOST", Flag: "authority-host", Usage: "Entra ID authority host for service principals (default: public cloud)", Check: authorityURL},
	{Env: "AZP_LOG_FORMAT", Flag: "log-format", Usage: "json or text (default: text on a terminal, else json)", Check: oneOf("json", "text")},
	{Env: "AZP_LOG_LEVEL", Flag: "log-level", Default: "info", Usage: "debug, info, warn or error", Check: oneOf("debug", "info", "warn", "error")},
	{Env: "AZP_STATE_DIR", Flag: "state-dir", Default: "/tmp/azp-entrypoint", Usage: "where the entrypoint keeps the state that the health command reads", Check: absolutePath("/tmp/azp-entrypoint")},
}

// Definitions returns every setting, in the order --help lists them.
func Definitions() []Definition {
	out := make([]Definition, len(definitions))
	copy(out, definitions)
	return out
}

// Lookup finds a definition by environment variable name.
func Lookup(env string) (Definition, bool) {
	for _, d := range definitions {
		if d.Env == env {
			return d, true
		}
	}
	return Definition{}, false
}

// SecretKeys are the JSON keys a Secrets Manager secret may hold.
func SecretKeys() []string {
	var keys []string
	for _, d := range definitions {
		if d.FromSecret {
			keys = append(keys, d.Env)
		}
	}
	sort.Strings(keys)
	return keys
}

// CredentialEnv lists the environment variables that carry credentials or point at them. The
// agent's environment never receives them.
func CredentialEnv() []string {
	return []string{"AZP_TOKEN", "AZP_TOKEN_FILE", "AZP_CLIENTID", "AZP_CLIENTSECRET", "AZP_TENANTID", "AZP_SECRET_ID"}
}

func flagToDef(flag string) (Definition, bool) {
	for _, d := range definitions {
		if d.Flag == flag {
			return d, true
		}
	}
	return Definition{}, false
}

func (k Kind) placeholder() string {
	switch k {
	case KindBool:
		return "true|false"
	case KindTristate:
		return "auto|true|false"
	case KindDuration:
		return "duration"
	case KindSeconds:
		return "duration|seconds"
	case KindBytes:
		return "size"
	case KindURL:
		return "url"
	case KindVersion:
		return "version"
	default:
		return "string"
	}
}

// Help renders the settings table for --help.
func Help() string {
	var b strings.Builder
	for _, d := range definitions {
		def := d.Default
		if def == "" {
			def = "-"
		}
		env := d.Env
		for _, a := range d.Aliases {
			env += ", " + a
		}
		b.WriteString("  --" + d.Flag + " " + d.Kind.placeholder() + "\n")
		b.WriteString("        " + env + " (default " + def + "): " + d.Usage + "\n")
	}
	return b.String()
}

// FlagDefinition finds a definition by flag name.
func FlagDefinition(flag string) (Definition, bool) { return flagToDef(flag) }

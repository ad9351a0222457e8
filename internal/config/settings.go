package config

import (
	"path/filepath"
	"time"
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

// Settings is the validated outcome of resolution. A field tagged `setting:"ENV"` receives that
// definition's value, parsed by its Kind (see bind); the credentials are resolved as a group.
type Settings struct {
	URL          string `setting:"AZP_URL"`
	Token        string // the value at start-up; later uses go back to TokenSource
	TokenFile    string
	TokenSource  TokenSource
	ClientID     string
	ClientSecret string
	TenantID     string
	// SPFromSecret is true when any service-principal field came from the secret, so later uses
	// fetch the secret again.
	SPFromSecret bool
	SecretID     string `setting:"AZP_SECRET_ID"`

	Pool            string   `setting:"AZP_POOL"`
	AgentName       string   `setting:"AZP_AGENT_NAME"`
	AgentNamePrefix string   `setting:"AZP_AGENT_NAME_PREFIX"`
	Work            string   `setting:"AZP_WORK"`
	WorkShared      Tristate `setting:"AZP_WORK_SHARED"`
	WorkMinFree     int64    `setting:"AZP_WORK_MIN_FREE"`
	ToolsDir        string   `setting:"AZP_TOOLS_DIR"`
	AgentDir        string   `setting:"AZP_AGENT_DIR"`
	AgentVersion    string   `setting:"AZP_AGENT_VERSION"`
	AgentPlatform   string   `setting:"AZP_AGENT_PLATFORM"`
	AgentCache      string   `setting:"AZP_AGENT_CACHE"`

	Once              bool          `setting:"AZP_ONCE"`
	IdleTimeout       time.Duration `setting:"AZP_IDLE_TIMEOUT"`
	StopTimeout       time.Duration `setting:"AZP_STOP_TIMEOUT"`
	Deregister        bool          `setting:"AZP_DEREGISTER"`
	RunAs             string        `setting:"AZP_RUN_AS"`
	ECSTaskProtection Tristate      `setting:"AZP_ECS_TASK_PROTECTION"`
	JobTaskRole       bool          `setting:"AZP_JOB_TASK_ROLE"`

	CACertFile    string `setting:"AZP_CA_CERT_FILE"`
	HTTPSProxy    string `setting:"HTTPS_PROXY"`
	HTTPProxy     string `setting:"HTTP_PROXY"`
	NoProxy       string `setting:"NO_PROXY"`
	AuthorityHost string `setting:"AZURE_AUTHORITY_HOST"`

	LogFormat string `setting:"AZP_LOG_FORMAT"`
	LogLevel  string `setting:"AZP_LOG_LEVEL"`
	StateDir  string `setting:"AZP_STATE_DIR"`

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

// MinStopTimeout is the shortest AZP_STOP_TIMEOUT accepted: a stop during download or
// configuration must end within 5 s, and disabling and deregistering need about that much.
const MinStopTimeout = 5 * time.Second

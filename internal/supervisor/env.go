package supervisor

import (
	"sort"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
)

// awsCredentialEnv are the variables through which the AWS SDKs find credentials: the ECS task
// role's endpoint, and static or web-identity credentials elsewhere. They can read the agent's
// secret, so jobs do not get them unless AZP_JOB_TASK_ROLE=true.
var awsCredentialEnv = []string{
	"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	"AWS_ACCESS_KEY_ID",
	"AWS_SECRET_ACCESS_KEY",
	"AWS_SESSION_TOKEN",
	"AWS_WEB_IDENTITY_TOKEN_FILE",
	"AWS_ROLE_ARN",
	"AWS_ROLE_SESSION_NAME",
	"AWS_PROFILE",
	"AWS_SHARED_CREDENTIALS_FILE",
}

// agentEnv builds the listener's environment from the entrypoint's: every setting and credential
// variable of ours removed (the agent gets what it needs as explicit variables below), the task
// role's credential variables removed unless asked for, and the agent's own knobs added.
func agentEnv(environ []string, s *config.Settings, extra map[string]string) []string {
	drop := map[string]bool{}
	for _, d := range config.Definitions() {
		if strings.HasPrefix(d.Env, "AZP_") {
			drop[d.Env] = true
		}
	}
	for _, k := range config.CredentialEnv() {
		drop[k] = true
	}
	if !s.JobTaskRole {
		for _, k := range awsCredentialEnv {
			drop[k] = true
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		upper := strings.ToUpper(k)
		// VSTS_AGENT_INPUT_* would configure the listener behind our back (and may hold a token).
		if drop[k] || strings.HasPrefix(upper, "VSTS_AGENT_INPUT_") {
			continue
		}
		env[k] = v
	}
	// The agent reads VSTS_HTTP_PROXY or http_proxy, never https_proxy (reference §7).
	if p := firstNonEmpty(s.HTTPSProxy, s.HTTPProxy); p != "" {
		env["VSTS_HTTP_PROXY"] = p
		env["https_proxy"], env["HTTPS_PROXY"] = p, p
	}
	if s.HTTPProxy != "" {
		env["http_proxy"], env["HTTP_PROXY"] = s.HTTPProxy, s.HTTPProxy
	}
	if s.NoProxy != "" {
		env["no_proxy"], env["NO_PROXY"] = s.NoProxy, s.NoProxy
	}
	if s.ToolsDir != "" {
		env["AGENT_TOOLSDIRECTORY"] = s.ToolsDir
	}
	if s.AuthorityHost != "" {
		env["AZURE_AUTHORITY_HOST"] = s.AuthorityHost
	}
	for k, v := range extra {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

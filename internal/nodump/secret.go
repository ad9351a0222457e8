package nodump

import "strings"

// secretNames are variables whose value is a credential or leads to one. Every config setting
// marked Secret is here (a test checks it).
var secretNames = map[string]bool{
	"AZP_TOKEN":                              true,
	"AZP_CLIENTSECRET":                       true,
	"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": true, // the task role: may read the agent's secret
	"AWS_CONTAINER_CREDENTIALS_FULL_URI":     true,
	"AWS_CONTAINER_AUTHORIZATION_TOKEN":      true,
	"AWS_SECRET_ACCESS_KEY":                  true,
	"AWS_SESSION_TOKEN":                      true,
	"AZURE_CLIENT_SECRET":                    true,
	"VSTS_HTTP_PROXY_PASSWORD":               true,
}

// IsSecret reports whether an environment entry's value must not stay in the block: a known
// credential variable, any VSTS_AGENT_INPUT_* (the real agent's configure inputs, which carry
// tokens and passwords), and any proxy URL with user information.
func IsSecret(name, value string) bool {
	upper := strings.ToUpper(name)
	switch {
	case secretNames[upper]:
		return true
	case strings.HasPrefix(upper, "VSTS_AGENT_INPUT_"):
		return true
	case strings.HasSuffix(upper, "_PROXY") && strings.Contains(value, "@"):
		return true
	}
	return false
}

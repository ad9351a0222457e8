package config

import (
	"fmt"
	"strings"
)

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

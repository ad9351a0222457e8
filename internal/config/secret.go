package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/redact"
)

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

// urlSettings are the settings whose values are URLs that may carry credentials: their values
// in error text go through redact.URL.
var urlSettings = []string{"AZP_URL", "HTTPS_PROXY", "HTTP_PROXY", "AZURE_AUTHORITY_HOST"}

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

// Package redact hides the credentials a URL can carry before it reaches a log line or error text:
// the user-info (a password, or a token written as the user name) and the query and fragment (where
// SAS signatures and tokens travel). It is the one place that knows how; settings, downloads and
// REST calls all show URLs through URL.
package redact

import "strings"

// Mask stands in for hidden text.
const Mask = "***"

// URL is the form of a URL fit for logs and error text. Everything before the last "@" after the
// scheme, or from the start when there is no scheme ("user:pw@proxy:3128",
// "<pat>@dev.azure.com/acme"), becomes Mask, and a query or fragment after it is cut to "?…" or
// "#…". It works on text, not on a parsed URL, because the text that reaches an error is often one
// that does not parse: an unescaped "/", "?" or "#" in a password hides where the authority ends,
// so the last "@" anywhere counts and the user-info is cut before the query. A path or query holding
// "@" loses a little of what is shown, which is the safe way to be wrong. (url.URL.Redacted hides
// only the password.)
func URL(raw string) string {
	prefix, rest := splitScheme(raw)
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		prefix += Mask + "@"
		rest = rest[at+1:]
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i+1] + "…"
	}
	return prefix + rest
}

// Userinfo hides what sits between "scheme://" and the last "@" in free text that may hold a URL
// (any setting's value, an error message), also when the text does not parse as a URL. Text without
// "://" is returned unchanged: it may be any value, and for values known to be URLs, URL covers
// the scheme-less forms.
func Userinfo(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	return s[:i+3] + Mask + rest[at:]
}

// RawUserinfo returns the user-info of a URL as written (escapes kept): the text between the scheme
// (when there is one) and the last "@" of the authority, which ends at the first "/", "?" or "#".
// Callers that register secrets for masking use it to find the forms URL and Userinfo hide.
func RawUserinfo(s string) (string, bool) {
	_, rest := splitScheme(s)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return "", false
	}
	return rest[:at], true
}

// splitScheme splits "scheme://rest" into "scheme://" and rest; without a valid scheme (RFC 3986: a
// letter, then letters, digits, "+", "-" or ".") before the first "://", prefix is empty, so that a
// "://" inside a password is not taken for a scheme separator.
func splitScheme(s string) (prefix, rest string) {
	i := strings.Index(s, "://")
	if i <= 0 {
		return "", s
	}
	for j, c := range s[:i] {
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (j == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", s
		}
	}
	return s[:i+3], s[i+3:]
}

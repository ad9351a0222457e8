package config

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// parse reads a setting's text (trimmed, never empty) by its Kind into the value its Settings
// field holds (see goType).
func (k Kind) parse(d Definition, text string) (any, *Error) {
	switch k {
	case KindBool:
		v, err := parseBool(d, text)
		return v, err
	case KindTristate:
		v, err := parseTristate(d, text)
		return v, err
	case KindDuration, KindSeconds:
		v, err := parseDuration(d, text, k == KindSeconds)
		return v, err
	case KindBytes:
		n, err := ParseBytes(text)
		if err != nil {
			return nil, invalid(d, text, err.Error(), "use a size such as 2GiB, 500MB or a number of bytes")
		}
		return n, nil
	case KindURL:
		return strings.TrimRight(text, "/"), nil
	case KindVersion:
		v := strings.TrimPrefix(text, "v")
		if !versionRE.MatchString(v) {
			return nil, invalid(d, text, "not a version", "use major.minor.patch, e.g. 4.260.0")
		}
		return v, nil
	}
	return text, nil
}

// goType is the type of the Settings field a setting of kind k fills.
func (k Kind) goType() reflect.Type {
	switch k {
	case KindBool:
		return reflect.TypeFor[bool]()
	case KindTristate:
		return reflect.TypeFor[Tristate]()
	case KindDuration, KindSeconds:
		return reflect.TypeFor[time.Duration]()
	case KindBytes:
		return reflect.TypeFor[int64]()
	}
	return reflect.TypeFor[string]()
}

// CheckFunc validates a setting's value after its Kind has parsed it: text is the trimmed text
// (never empty), value what Kind made of it. It returns what is wrong and how to fix it, or "".
type CheckFunc func(text string, value any) (problem, fix string)

// oneOf accepts exactly the allowed texts.
func oneOf(allowed ...string) CheckFunc {
	return func(v string, _ any) (string, string) {
		if slices.Contains(allowed, v) {
			return "", ""
		}
		return "not a supported value", "use one of " + strings.Join(allowed, ", ")
	}
}

// absolutePath accepts an absolute path; example shows one.
func absolutePath(example string) CheckFunc {
	return func(v string, _ any) (string, string) {
		if filepath.IsAbs(v) {
			return "", ""
		}
		return "must be an absolute path", "e.g. " + example
	}
}

// agentName accepts what the server takes as an agent name, at most maxLen characters; what names
// the setting's role in the problem text.
func agentName(maxLen int, what string) CheckFunc {
	return func(v string, _ any) (string, string) {
		if len(v) <= maxLen && agentNameRE.MatchString(v) {
			return "", ""
		}
		return "not a valid " + what, fmt.Sprintf("use at most %d characters without \" / : < > \\ | * ? @", maxLen)
	}
}

func organisationURL(v string, _ any) (string, string) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "not an organisation URL", "use https://dev.azure.com/<org> or https://<server>/<collection>"
	}
	if u.User != nil {
		return "holds credentials", "remove the user-info part and pass the token with AZP_TOKEN, AZP_TOKEN_FILE or AZP_SECRET_ID"
	}
	if strings.EqualFold(u.Hostname(), "dev.azure.com") && strings.Trim(u.Path, "/") == "" {
		return "names no organisation", "use https://dev.azure.com/<org>"
	}
	return "", ""
}

func authorityURL(v string, _ any) (string, string) {
	if u, err := url.Parse(v); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.User != nil {
		return "not an authority URL", "e.g. https://login.microsoftonline.us/"
	}
	return "", ""
}

func proxyURL(v string, _ any) (string, string) {
	if _, err := parseProxyURL(v); err != nil {
		return "not a proxy URL", "use http://host:port, http://user:password@host:port or host:port"
	}
	return "", ""
}

func readableFile(v string, _ any) (string, string) {
	if st, err := os.Stat(v); err != nil || st.IsDir() {
		return "file not found or not readable", "mount the PEM bundle there or unset the setting"
	}
	return "", ""
}

func runAsUser(v string, _ any) (string, string) {
	if validRunAs(v) {
		return "", ""
	}
	return "not a user", "use a user name, a uid, or uid:gid, e.g. agent or 1000:1000"
}

func stopTimeout(_ string, v any) (string, string) {
	if v.(time.Duration) < MinStopTimeout {
		return "too short: the stop sequence needs at least 5s to disable, stop and deregister the agent", "set it to the platform's grace period (ECS stopTimeout, compose stop_grace_period), at least 5s"
	}
	return "", ""
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
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n < 0 {
		return 0, invalid(d, v, "negative", fix)
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

var (
	versionRE   = regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	agentNameRE = regexp.MustCompile(`^[^"/:<>\\|*?@\x00-\x1f]+$`)
	userNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*\$?$`)
)

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

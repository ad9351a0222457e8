package fakeagent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

// Localized output, like the real listener's StringUtil (src/Agent.Sdk/Util/StringUtil.cs):
// EnsureLoaded merges bin/en-US/strings.json and then bin/<CurrentCulture.Name>/strings.json (when
// the culture is neither invariant nor en-US) from the directory of the entry assembly; a missing
// file is skipped, a missing key prints "notFound:<key>". InvariantGlobalization is false
// (src/Common.props), so CurrentCulture comes from ICU's default locale, which on Linux is taken
// from LC_ALL, then LC_MESSAGES, then LANG ("de_DE.UTF-8" is culture "de-DE"; "C", "POSIX" or
// nothing is the invariant culture).

// culture returns the .NET culture name the environment selects ("" for the invariant culture).
func culture() string {
	var v string
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if v = os.Getenv(k); v != "" {
			break
		}
	}
	if i := strings.IndexAny(v, ".@"); i >= 0 {
		v = v[:i]
	}
	if v == "" || v == "C" || v == "POSIX" {
		return ""
	}
	return strings.ReplaceAll(v, "_", "-")
}

// loadStrings loads the strings the way StringUtil.EnsureLoaded does. Without any strings.json
// next to the executable (azp-sim run directly as fake-listener), the built-in en-US set is used.
func loadStrings(binDir string) map[string]string {
	names := []string{"en-US"}
	if c := culture(); c != "" && c != "en-US" {
		names = append(names, c)
	}
	out := map[string]string{}
	found := false
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(binDir, n, "strings.json"))
		if err != nil {
			continue
		}
		var m map[string]any
		if json.Unmarshal(bytes.TrimPrefix(b, bom), &m) != nil {
			continue
		}
		found = true
		for k, v := range m {
			switch t := v.(type) {
			case string:
				out[k] = t
			case []any: // multi-line entries are arrays, joined by newlines
				var lines []string
				for _, l := range t {
					lines = append(lines, fmt.Sprint(l))
				}
				out[k] = strings.Join(lines, "\n")
			}
		}
	}
	if !found {
		return pkgbuild.Strings("en-US")
	}
	return out
}

// loc formats key like StringUtil.Loc: .NET composite format with {0}, {1}, …; a time.Time
// argument with the "u" format specifier ({0:u}) is "yyyy-MM-dd HH:mm:ssZ".
func (o *output) loc(key string, args ...any) string {
	f, ok := o.strings[key]
	if !ok {
		return "notFound:" + key
	}
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c == '{' && i+1 < len(f) && f[i+1] == '{' || c == '}' && i+1 < len(f) && f[i+1] == '}' {
			b.WriteByte(c)
			i++
			continue
		}
		if c != '{' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(f[i:], '}')
		if end < 0 {
			b.WriteString(f[i:])
			break
		}
		spec := f[i+1 : i+end]
		i += end
		idx, format, _ := strings.Cut(spec, ":")
		var n int
		if _, err := fmt.Sscanf(idx, "%d", &n); err != nil || n >= len(args) {
			b.WriteString("{" + spec + "}")
			continue
		}
		switch a := args[n].(type) {
		case time.Time:
			if format == "u" {
				b.WriteString(a.UTC().Format("2006-01-02 15:04:05Z"))
			} else {
				b.WriteString(a.String())
			}
		default:
			b.WriteString(fmt.Sprint(a))
		}
	}
	return b.String()
}

// say prints a localized line on stdout (Terminal.WriteLine); sayErr on stderr (Terminal.WriteError).
func (o *output) say(key string, args ...any)    { o.line(o.loc(key, args...)) }
func (o *output) sayErr(key string, args ...any) { o.write(os.Stderr, "ERR  ", o.loc(key, args...)) }

package supervisor

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// The listener's lines are localized: StringUtil.Loc (src/Agent.Sdk/Util/StringUtil.cs) formats
// them from bin/en-US/strings.json merged with bin/<CurrentCulture>/strings.json, and .NET takes
// the culture from the environment (LC_ALL, else LC_MESSAGES, else LANG, through ICU's default
// locale). So the supervisor reads the same files of the installed package, for the culture the
// listener gets, and recognises a line in either language (a key missing from the culture's file
// is printed in English).
//
// What a line says is a hint only: a job runs as the listener's user and can print anything into
// its output. Nothing acts on a line alone; decide.go and watch.go confirm with the server or the
// process tree.

// messageKeys are the strings.json keys the supervisor reads, with the en-US text used when the
// package ships no strings.json (src/Misc/layoutbin/en-US/strings.json).
var messageKeys = map[string]string{
	"ListenForJobs":         "{0:u}: Listening for Jobs",
	"RunningJob":            "{0:u}: Running job: {1}",
	"JobCompleted":          "{0:u}: Job {1} completed with result: {2}",
	"QueueConError":         "{0:u}: Agent connect error: {1}. Retrying until reconnected.",
	"QueueConnected":        "{0:u}: Agent reconnected.",
	"MissingAgent":          "The agent no longer exists on the server. Please reconfigure the agent.",
	"SessionExist":          "A session for this agent already exists.",
	"SessionExistStopRetry": "Stop retry on SessionConflictException after retried for {0} seconds.",
	"AgentExit":             "Agent will exit shortly for update, should back online within 10 seconds.",
}

// pattern is one localized line: a regular expression for the whole line, and which group holds
// each placeholder.
type pattern struct {
	re     *regexp.Regexp
	groups map[int]int // placeholder index -> submatch index
}

// match reports whether line is this message, and its placeholders' values.
func (p pattern) match(line string) (map[int]string, bool) {
	m := p.re.FindStringSubmatch(spaces(line))
	if m == nil {
		return nil, false
	}
	args := map[int]string{}
	for i, g := range p.groups {
		args[i] = m[g]
	}
	return args, true
}

var placeholder = regexp.MustCompile(`\{(\d+)(?::([^}]*))?\}`)

// compileFormat turns a .NET composite format ("{0:u}: Running job: {1}") into a pattern for the
// whole line. {n:u} is the universal sortable date ("yyyy-MM-dd HH:mm:ssZ").
func compileFormat(format string) (pattern, bool) {
	format = spaces(format)
	var b strings.Builder
	b.WriteString(`^\s*`)
	groups := map[int]int{}
	last, group := 0, 0
	for _, loc := range placeholder.FindAllStringSubmatchIndex(format, -1) {
		b.WriteString(regexp.QuoteMeta(format[last:loc[0]]))
		n, _ := strconv.Atoi(format[loc[2]:loc[3]])
		if loc[4] >= 0 && format[loc[4]:loc[5]] == "u" {
			b.WriteString(`(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z)`)
		} else {
			b.WriteString(`(.*?)`)
		}
		group++
		groups[n] = group
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(format[last:]))
	b.WriteString(`\s*$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return pattern{}, false
	}
	return pattern{re: re, groups: groups}, true
}

// spaces turns every space character into a plain space: translations use no-break spaces
// ("10\u00a0Sekunden" in de-DE), and a terminal or a log pipe may not keep them.
func spaces(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		return r
	}, s)
}

// messages are the listener's lines the supervisor recognises, in English and in the listener's
// culture.
type messages struct {
	culture  string
	patterns map[string][]pattern
}

// loadMessages reads the installed package's strings for the culture env selects. It never fails:
// a missing or unreadable file leaves the English text.
func loadMessages(agentDir string, env []string) *messages {
	m := &messages{culture: culture(env), patterns: map[string][]pattern{}}
	add := func(key, format string) {
		if p, ok := compileFormat(format); ok {
			for _, q := range m.patterns[key] {
				if q.re.String() == p.re.String() {
					return
				}
			}
			m.patterns[key] = append(m.patterns[key], p)
		}
	}
	en := readStrings(agentDir, "en-US")
	for key, def := range messageKeys {
		add(key, def)
		if s, ok := en[key]; ok {
			add(key, s)
		}
	}
	if m.culture != "" && m.culture != "en-US" {
		loc := readStrings(agentDir, m.culture)
		for key := range messageKeys {
			if s, ok := loc[key]; ok {
				add(key, s)
			}
		}
	}
	return m
}

// readStrings reads bin/<culture>/strings.json. A value may be a string or an array of lines
// (StringUtil.Loc joins them); only strings matter here.
func readStrings(agentDir, culture string) map[string]string {
	if strings.ContainsAny(culture, `/\`) || culture == ".." {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(agentDir, "bin", culture, "strings.json"))
	if err != nil {
		return nil
	}
	var raw map[string]any
	if json.Unmarshal(bytes.TrimPrefix(data, utf8BOM), &raw) != nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range raw {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// culture is the .NET culture name the listener runs with: the first of LC_ALL, LC_MESSAGES and
// LANG that is set ("de_DE.UTF-8" -> "de-DE"); "" for C, POSIX and unset (the invariant culture,
// whose strings are en-US). DOTNET_SYSTEM_GLOBALIZATION_INVARIANT makes every culture invariant.
func culture(env []string) string {
	get := func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], k+"="); ok {
				return v
			}
		}
		return ""
	}
	if v := strings.ToLower(get("DOTNET_SYSTEM_GLOBALIZATION_INVARIANT")); v == "1" || v == "true" {
		return ""
	}
	var v string
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if v = get(k); v != "" {
			break
		}
	}
	v, _, _ = strings.Cut(v, ".")
	v, _, _ = strings.Cut(v, "@")
	if v == "" || v == "C" || v == "POSIX" {
		return ""
	}
	return strings.ReplaceAll(v, "_", "-")
}

func (m *messages) is(key, line string) (map[int]string, bool) {
	for _, p := range m.patterns[key] {
		if args, ok := p.match(line); ok {
			return args, true
		}
	}
	return nil, false
}

// classify reads one line of the listener's output.
func (m *messages) classify(line string) event {
	if _, ok := m.is("ListenForJobs", line); ok {
		return event{kind: evListening}
	}
	if args, ok := m.is("RunningJob", line); ok {
		return event{kind: evJobStarted, job: strings.TrimSpace(args[1])}
	}
	if _, ok := m.is("JobCompleted", line); ok {
		return event{kind: evJobFinished}
	}
	if _, ok := m.is("QueueConError", line); ok {
		return event{kind: evConnectError}
	}
	if _, ok := m.is("QueueConnected", line); ok {
		return event{kind: evReconnected}
	}
	if _, ok := m.is("AgentExit", line); ok {
		return event{kind: evUpdating}
	}
	return event{}
}

// classifyFailure sorts an exit code 1 by what the listener printed before it (reference §3).
func (m *messages) classifyFailure(lines []string) outcome {
	for _, l := range lines {
		if _, ok := m.is("SessionExist", l); ok {
			return outSessionConflict
		}
		if _, ok := m.is("SessionExistStopRetry", l); ok {
			return outSessionConflict
		}
		if _, ok := m.is("MissingAgent", l); ok {
			return outMissingAgent
		}
	}
	return outFatal
}

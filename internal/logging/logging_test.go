package logging

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/capture"
)

// secrets that exercise every escaping rule of the handlers: JSON escapes " \ and control
// characters, encoding/json also < > &, slog escapes U+2028, the text handler quotes spaces and
// = with strconv.Quote, and a value ending in a backslash must not leave half an escape behind.
var secrets = []string{
	"plainPATvalue0123456789abcdefghijklmnop",
	`quo"te\back<lt>&amp'`,
	"sp ace=eq\ttab\nnew\x01ctl",
	"päss\u2028wörd✓\u00a0",
	`endsWithBackslash\`,
	"url/+?&=%#secret",
}

type record func(l *slog.Logger, secret string)

// paths are the ways a secret can enter a log record.
var paths = map[string]record{
	"message":     func(l *slog.Logger, s string) { l.Info("token is " + s) },
	"string attr": func(l *slog.Logger, s string) { l.Info("m", "token", s) },
	"attr key":    func(l *slog.Logger, s string) { l.Info("m", slog.String(s, "v")) },
	"With attr":   func(l *slog.Logger, s string) { l.With("token", s).Info("m") },
	"With group":  func(l *slog.Logger, s string) { l.WithGroup("g").With("token", s).Info("m", "k", s) },
	"group attr": func(l *slog.Logger, s string) {
		l.Info("m", slog.Group("g", slog.String("token", s), slog.Group("h", "t", s)))
	},
	"error":         func(l *slog.Logger, s string) { l.Error("m", "err", fmt.Errorf("wrap: %w", errors.New("auth "+s))) },
	"error %q":      func(l *slog.Logger, s string) { l.Error("m", "err", fmt.Errorf("bad token %q", s)) },
	"joined errors": func(l *slog.Logger, s string) { l.Error("m", "err", errors.Join(errors.New("a"), errors.New(s))) },
	"struct":        func(l *slog.Logger, s string) { l.Info("m", "cfg", struct{ Token, Other string }{s, "x"}) },
	"map and slice": func(l *slog.Logger, s string) {
		l.Info("m", "v", map[string]any{"a": []any{1, s, map[string]string{"b": s}}})
	},
	"bytes":          func(l *slog.Logger, s string) { l.Info("m", "b", []byte(s)) },
	"struct bytes":   func(l *slog.Logger, s string) { l.Info("m", "v", struct{ B []byte }{[]byte(s)}) },
	"pointer struct": func(l *slog.Logger, s string) { l.Info("m", "v", &struct{ Token string }{s}) },
	"LogValuer":      func(l *slog.Logger, s string) { l.Info("m", "v", valuer(s)) },
	"Stringer":       func(l *slog.Logger, s string) { l.Info("m", "v", stringer(s)) },
	"URL-encoded": func(l *slog.Logger, s string) {
		l.Info("GET https://x/?token="+url.QueryEscape(s), "path", "/p/"+url.PathEscape(s))
	},
	"Basic header": func(l *slog.Logger, s string) {
		for _, user := range []string{"", "VstsAgent", "PAT", "someone", "ab"} {
			l.Info("request", "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+s)))
			l.Info("request", "auth", base64.RawURLEncoding.EncodeToString([]byte(user+":"+s)))
		}
	},
	"agent line": func(l *slog.Logger, s string) {
		l.Info("2024-05-01 10:00:00Z: Connecting with token "+s, "source", "agent")
	},
	"agent JSON line": func(l *slog.Logger, s string) {
		j, _ := json.Marshal(map[string]string{"token": s})
		l.Info(string(j), "source", "agent")
	},
	"agent quoted line": func(l *slog.Logger, s string) {
		l.Info("set "+strconv.Quote(s), "source", "agent")
	},
}

type valuer string

func (v valuer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("inner", string(v)), slog.Any("deeper", map[string]string{"x": string(v)}))
}

type stringer string

func (s stringer) String() string { return "stringer(" + string(s) + ")" }

// leakForms are the forms in which a secret would be recognisable in the output.
func leakForms(secret string) []string {
	forms := []string{secret, url.QueryEscape(secret), url.PathEscape(secret)}
	q := strconv.Quote(secret)
	forms = append(forms, q[1:len(q)-1])
	for _, html := range []bool{true, false} {
		var b bytes.Buffer
		e := json.NewEncoder(&b)
		e.SetEscapeHTML(html)
		_ = e.Encode(secret)
		forms = append(forms, strings.TrimSuffix(strings.TrimSuffix(b.String(), "\n"), `"`)[1:])
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for k := 0; k < 3; k++ {
			forms = append(forms, base64Core(enc, secret, k))
		}
	}
	return forms
}

func TestNoSecretLeaks(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		for name, path := range paths {
			for i, secret := range secrets {
				t.Run(fmt.Sprintf("%s/%s/%d", format, name, i), func(t *testing.T) {
					m := NewMasker()
					m.Add(secret)
					var out bytes.Buffer
					path(New(&out, Options{Format: format, Level: "debug"}, m), secret)
					text := out.String()
					if text == "" {
						t.Fatal("nothing logged")
					}
					if !strings.Contains(text, Mask) {
						t.Errorf("no mask in output:\n%s", text)
					}
					for _, form := range leakForms(secret) {
						if form != "" && strings.Contains(text, form) {
							t.Errorf("output holds the secret as %q:\n%s", form, text)
						}
					}
					if format == "json" {
						checkJSONLines(t, text, secret)
					}
				})
			}
		}
	}
}

// checkJSONLines asserts that masking left every line valid JSON and that no string in it, once
// decoded (so undoing exactly the escaping the handler did), holds the secret.
func checkJSONLines(t *testing.T, text, secret string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("masking broke the JSON: %v\n%s", err, line)
			continue
		}
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case string:
				if strings.Contains(v, secret) {
					t.Errorf("decoded value holds the secret: %q", v)
				}
			case map[string]any:
				for k, e := range v {
					walk(k)
					walk(e)
				}
			case []any:
				for _, e := range v {
					walk(e)
				}
			}
		}
		walk(v)
	}
}

func TestMaskerString(t *testing.T) {
	m := NewMasker()
	if got := m.String("nothing registered"); got != "nothing registered" {
		t.Error(got)
	}
	m.Add("abc", "  ", "") // too short to mask safely: ignored
	if got := m.String("abc def"); got != "abc def" {
		t.Errorf("short value masked: %q", got)
	}
	m.Add(" tok-1234 \n", "tok-1234", "other-secret-99")
	for in, want := range map[string]string{
		"a tok-1234 b":                 "a *** b",
		"tok-1234tok-1234":             "******",
		"x other-secret-99 / tok-1234": "x *** / ***",
		"clean line":                   "clean line",
	} {
		if got := m.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	if !m.Contains("has tok-1234") || m.Contains("clean") {
		t.Error("Contains")
	}
	var nilMasker *Masker
	nilMasker.Add("tok-1234")
	if nilMasker.String("tok-1234") != "tok-1234" || nilMasker.Contains("tok-1234") {
		t.Error("a nil masker must pass text through")
	}
}

// TestNoFalsePositives: a short secret's base64 fragments are not masked on their own, so ordinary
// base64 text (hashes, IDs) survives.
func TestNoFalsePositives(t *testing.T) {
	m := NewMasker()
	m.Add("abcd")
	for _, f := range m.forms {
		if len(f) < minSecretLen {
			t.Errorf("form %q is shorter than %d", f, minSecretLen)
		}
	}
	const hash = "sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	if got := m.String(hash); got != hash {
		t.Errorf("%q masked to %q", hash, got)
	}
}

func TestSecretAddedLater(t *testing.T) {
	m := NewMasker()
	var out bytes.Buffer
	l := New(&out, Options{Format: "json"}, m)
	l.Info("before", "t", "late-secret-1")
	m.Add("late-secret-1")
	l.Info("after", "t", "late-secret-1")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "late-secret-1") || strings.Contains(lines[1], "late-secret-1") {
		t.Errorf("got:\n%s", out.String())
	}
}

func TestFormatAndLevel(t *testing.T) {
	m := NewMasker()
	for _, c := range []struct {
		o       Options
		json    bool
		debug   bool
		warnOut bool
	}{
		{Options{}, true, false, true}, // not a terminal: JSON
		{Options{Format: "json", Level: "debug"}, true, true, true},
		{Options{Format: "text", Level: "info"}, false, false, true},
		{Options{Format: "text", Level: "error"}, false, false, false},
	} {
		var out bytes.Buffer
		l := New(&out, c.o, m)
		l.Debug("dbg")
		l.Warn("wrn", "k", "v")
		text := out.String()
		if strings.Contains(text, "dbg") != c.debug || strings.Contains(text, "wrn") != c.warnOut {
			t.Errorf("%+v: level filtering wrong:\n%s", c.o, text)
		}
		if !c.warnOut {
			continue
		}
		line := strings.Split(strings.TrimSpace(text), "\n")[0]
		if c.json {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("%+v: not JSON: %s", c.o, line)
			}
			for _, k := range []string{"time", "level", "msg"} {
				if _, ok := rec[k]; !ok {
					t.Errorf("JSON record lacks %q: %s", k, line)
				}
			}
		} else if !strings.Contains(line, "level=") || !strings.Contains(line, "msg=") {
			t.Errorf("%+v: not text: %s", c.o, line)
		}
	}
}

// TestWriter: the masking writer reports the caller's length (slog treats a short write as an
// error) and masks whatever passes through it, such as the agent's raw output.
func TestWriter(t *testing.T) {
	m := NewMasker()
	m.Add("w-secret-42")
	var out bytes.Buffer
	w := m.Writer(&out)
	in := []byte("agent says w-secret-42\n")
	n, err := w.Write(in)
	if err != nil || n != len(in) {
		t.Errorf("Write = %d, %v; want %d", n, err, len(in))
	}
	if out.String() != "agent says ***\n" {
		t.Errorf("%q", out.String())
	}
}

func TestConcurrentAddAndLog(t *testing.T) {
	m := NewMasker()
	var out capture.Buffer
	l := New(&out, Options{Format: "json"}, m)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			m.Add(fmt.Sprintf("concurrent-secret-%d", i))
		}()
		go func() {
			defer wg.Done()
			for range 20 {
				l.Info("line", "i", i)
			}
		}()
	}
	wg.Wait()
	m.Add("concurrent-secret-0")
	l.Info("concurrent-secret-0 concurrent-secret-3")
	if strings.Contains(out.String(), "concurrent-secret-") {
		t.Error("a secret registered concurrently was not masked")
	}
}

func TestDiscard(t *testing.T) {
	l := Discard()
	l.Info("nothing")
	if l.Enabled(context.Background(), slog.LevelError) {
		t.Error("Discard should be disabled at every level")
	}
}

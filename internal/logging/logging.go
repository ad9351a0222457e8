// Package logging sets up the entrypoint's log/slog logger and masks secrets in everything it writes.
//
// Masking happens on the encoded bytes of each record, after the handler has rendered the message,
// every attribute (including those added with With) and any re-emitted agent line, so no path into
// the log can bypass it. A secret must be registered with the Masker before it can appear in a
// record; the secrets package registers every value it fetches. This package never logs by itself.
package logging

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/term"
)

// Mask replaces a secret in output.
const Mask = "***"

// Masker replaces registered secret values, and their common encodings, in byte streams.
type Masker struct {
	mu       sync.RWMutex
	forms    []string // longest first, so a longer encoding is not half-replaced by a shorter one
	replacer *strings.Replacer
}

// NewMasker returns an empty masker.
func NewMasker() *Masker { return &Masker{} }

// Add registers secret values. Each value is masked in every form in which a log line can carry
// it: as is; escaped as slog's JSON handler, encoding/json (with and without HTML escaping) and
// strconv.Quote (the text handler) write it, also twice over for a line that was already escaped
// once (an agent line holding JSON, an error quoting a value with %q); URL-encoded; as the base64
// of ":value" and "VstsAgent:value" (HTTP Basic credentials with the PAT as password); and as the
// part of any base64 text that encodes the value whatever precedes it (Basic credentials with
// another user name, a []byte attribute, which the JSON handler writes as base64) and the
// decimal bytes of a []byte printed with %v.
func (m *Masker) Add(secrets ...string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, f := range m.forms {
		seen[f] = true
	}
	for _, s := range secrets {
		s = strings.TrimSpace(s)
		if len(s) < minSecretLen {
			continue
		}
		for _, f := range forms(s) {
			if len(f) >= minSecretLen && !seen[f] {
				seen[f] = true
				m.forms = append(m.forms, f)
			}
		}
	}
	// Longest first: at one position the replacer tries its pairs in order, so the escaped form
	// of a value ending in a backslash wins over the raw form, which would leave half an escape
	// sequence behind and break the JSON line.
	sort.SliceStable(m.forms, func(i, j int) bool { return len(m.forms[i]) > len(m.forms[j]) })
	pairs := make([]string, 0, 2*len(m.forms))
	for _, f := range m.forms {
		pairs = append(pairs, f, Mask)
	}
	m.replacer = strings.NewReplacer(pairs...)
}

// minSecretLen: shorter values would mask ordinary words; no real credential is that short.
const minSecretLen = 4

// minBase64Core is the shortest base64 fragment masked on its own; shorter fragments of random
// base64 text would match too often.
const minBase64Core = 6

func forms(s string) []string {
	var out []string
	for _, f := range []string{s, url.QueryEscape(s), url.PathEscape(s)} {
		out = append(out, f)
		for _, e := range escapes(f) {
			out = append(out, e)
			out = append(out, escapes(e)...)
		}
	}
	// A []byte field inside a struct that the text handler prints with %+v: [112 97 116 ...].
	out = append(out, strings.Trim(fmt.Sprint([]byte(s)), "[]"))
	for _, prefix := range []string{":", "VstsAgent:"} {
		raw := []byte(prefix + s)
		out = append(out,
			base64.StdEncoding.EncodeToString(raw),
			base64.RawStdEncoding.EncodeToString(raw),
			base64.URLEncoding.EncodeToString(raw),
			base64.RawURLEncoding.EncodeToString(raw))
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for offset := 0; offset < 3; offset++ {
			if core := base64Core(enc, s, offset); len(core) >= minBase64Core {
				out = append(out, core)
			}
		}
	}
	return out
}

// escapes returns s as each encoder that can write a log line escapes it inside a string.
func escapes(s string) []string {
	q := strconv.Quote(s)
	qa := strconv.QuoteToASCII(s)
	return []string{
		between(s, func(w io.Writer, v string) { slog.New(slog.NewJSONHandler(w, nil)).Info(v) }),
		between(s, func(w io.Writer, v string) { slog.New(slog.NewTextHandler(w, nil)).Info(v) }),
		between(s, func(w io.Writer, v string) { _ = json.NewEncoder(w).Encode(v) }),
		between(s, func(w io.Writer, v string) {
			e := json.NewEncoder(w)
			e.SetEscapeHTML(false)
			_ = e.Encode(v)
		}),
		q[1 : len(q)-1],
		qa[1 : len(qa)-1],
	}
}

// between renders s with markers on both sides through write and returns what the encoder made
// of s: the escaped form exactly as that encoder writes it, rather than as we think it would.
func between(s string, write func(io.Writer, string)) string {
	const open, shut = "MASKOPEN", "MASKSHUT"
	var b bytes.Buffer
	write(&b, open+s+shut)
	out := b.String()
	i, j := strings.Index(out, open), strings.LastIndex(out, shut)
	if i < 0 || j < i {
		return ""
	}
	return out[i+len(open) : j]
}

// base64Core returns the base64 characters that encode s alone when s starts offset bytes into a
// 3-byte group: the characters that mix in bits of the text around s are left out.
func base64Core(enc *base64.Encoding, s string, offset int) string {
	if len(s) < 3 {
		return ""
	}
	raw := make([]byte, offset+len(s))
	copy(raw[offset:], s)
	full := enc.EncodeToString(raw)
	// Each 3 bytes become 4 characters of 6 bits. Leading characters that contain any of the
	// offset bits, and trailing ones that contain bits after s, depend on the neighbours.
	first := (8*offset + 5) / 6
	lastBit := 8 * (offset + len(s)) // bits [0, lastBit) are ours or the prefix's
	last := lastBit / 6              // characters [first, last) hold only bits of s
	if last <= first || last > len(full) {
		return ""
	}
	return full[first:last]
}

// String masks s.
func (m *Masker) String(s string) string {
	if m == nil {
		return s
	}
	m.mu.RLock()
	r := m.replacer
	m.mu.RUnlock()
	if r == nil {
		return s
	}
	return r.Replace(s)
}

// Contains reports whether s holds a registered secret in any form.
func (m *Masker) Contains(s string) bool { return m.String(s) != s }

// Writer returns w behind the masker. slog handlers write each record with one Write call, so a
// secret is never split across two calls.
func (m *Masker) Writer(w io.Writer) io.Writer { return &maskWriter{m: m, w: w} }

type maskWriter struct {
	mu sync.Mutex
	m  *Masker
	w  io.Writer
}

func (mw *maskWriter) Write(p []byte) (int, error) {
	masked := mw.m.String(string(p))
	mw.mu.Lock()
	defer mw.mu.Unlock()
	if _, err := io.Copy(mw.w, bytes.NewReader([]byte(masked))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Options choose the format and level.
type Options struct {
	Format string // json, text, or "" for text on a terminal and JSON elsewhere
	Level  string // debug, info, warn, error
}

// New returns a logger writing to w with secrets masked.
func New(w io.Writer, o Options, m *Masker) *slog.Logger {
	level := new(slog.LevelVar)
	_ = level.UnmarshalText([]byte(orDefault(o.Level, "info")))
	format := o.Format
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	hopts := &slog.HandlerOptions{Level: level}
	out := m.Writer(w)
	if format == "text" {
		return slog.New(slog.NewTextHandler(out, hopts))
	}
	return slog.New(slog.NewJSONHandler(out, hopts))
}

// Discard is a logger for tests that do not look at logs.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

package config

import (
	"strconv"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/redact"
)

// Error is a validation error that names the setting, the offending value (masked when secret) and
// what to do. It unwraps to exit.ErrConfig.
type Error struct {
	Setting string // environment variable name
	Flag    string
	Value   string // already masked when secret
	Problem string
	Fix     string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Setting)
	if e.Flag != "" {
		b.WriteString(" (--" + e.Flag + ")")
	}
	if e.Value != "" {
		b.WriteString(" = " + strconv.Quote(e.Value))
	}
	b.WriteString(": " + e.Problem)
	if e.Fix != "" {
		b.WriteString(" (" + e.Fix + ")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return exit.ErrConfig }

func invalid(d Definition, value, problem, fix string) *Error {
	if d.Secret && value != "" {
		value = masked
	}
	return &Error{Setting: d.Env, Flag: d.Flag, Value: value, Problem: problem, Fix: fix}
}

// masked stands in for a secret value in error text.
const masked = redact.Mask

// CredentialError is the configuration error of "exactly one kind of credential": none, both
// kinds, or an incomplete service principal. It names where each credential field was found
// (--flag, VARIABLE, the secret's KEY) and never a value. It unwraps to exit.ErrConfig.
type CredentialError struct {
	Problem string   // what is wrong
	Seen    []string // the sources found, e.g. "AZP_TOKEN_FILE", "the secret's AZP_CLIENTID"
	Missing []string // service-principal variables still needed
	Fix     string
}

func (e *CredentialError) Error() string {
	var b strings.Builder
	b.WriteString("credentials: " + e.Problem)
	if len(e.Seen) > 0 {
		b.WriteString("; found " + strings.Join(e.Seen, ", "))
	}
	if len(e.Missing) > 0 {
		b.WriteString("; missing " + strings.Join(e.Missing, ", "))
	}
	if e.Fix != "" {
		b.WriteString(" (" + e.Fix + ")")
	}
	return b.String()
}

func (e *CredentialError) Unwrap() error { return exit.ErrConfig }

// Package exit decides the process exit code of every failure in one place.
//
// Packages mark an error with the kind of failure the contract distinguishes (configuration,
// authentication, runtime) and main maps it with Code. Nothing else in the program chooses exit
// codes, so the contract's table is true by construction.
package exit

import "errors"

// Exit codes from the contract.
const (
	OK      = 0
	Failure = 1 // runtime failure after retries
	Usage   = 2 // configuration error
	Denied  = 3 // authentication or authorisation failure
)

// Sentinels that kind-marked errors match with errors.Is.
var (
	ErrRuntime = errors.New("runtime failure")
	ErrConfig  = errors.New("configuration error")
	ErrAuth    = errors.New("authentication failure")
)

type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() []error {
	return []error{e.err, e.kind}
}

func mark(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}

// Config marks err as a configuration error (exit 2).
func Config(err error) error { return mark(ErrConfig, err) }

// Auth marks err as an authentication or authorisation failure (exit 3).
func Auth(err error) error { return mark(ErrAuth, err) }

// Runtime marks err as a runtime failure (exit 1). Unmarked errors are runtime failures too; the
// mark exists so that an inner kind cannot be mistaken for the outer one.
func Runtime(err error) error { return mark(ErrRuntime, err) }

// Code maps an error to the contract's exit code. The outermost mark decides, so a caller that
// knows better (for example that a refused token during deregistration is a runtime failure) can
// re-mark an inner error. Unmarked errors are runtime failures.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var ke *kindError
	if errors.As(err, &ke) {
		switch ke.kind {
		case ErrConfig:
			return Usage
		case ErrAuth:
			return Denied
		}
	}
	return Failure
}

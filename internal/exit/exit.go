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

// kindError marks err with a kind. Its kind comes first in Unwrap, so a walk of the error tree in
// the order errors.Is takes meets a mark's kind before anything marked deeper down.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() []error {
	return []error{e.kind, e.err}
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

// OrRuntime keeps the kind err already has and marks anything else a runtime failure.
func OrRuntime(err error) error {
	if err == nil || Kind(err) != nil {
		return err
	}
	return Runtime(err)
}

// Kind is the sentinel (ErrConfig, ErrAuth, ErrRuntime) that decides err's exit code, or nil when
// err carries none. Any error that unwraps to a sentinel is marked with it: the exit.Config and
// friends wrappers, and types of other packages whose Unwrap returns one (config.Error). The
// outermost mark wins: the error tree is walked in the order errors.Is walks it (depth first, a
// joined error's parts in order) and the first sentinel met decides.
func Kind(err error) error {
	for err != nil {
		switch err {
		case ErrConfig, ErrAuth, ErrRuntime:
			return err
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if k := Kind(e); k != nil {
					return k
				}
			}
			return nil
		default:
			return nil
		}
	}
	return nil
}

// Code maps an error to the contract's exit code: its Kind, and a runtime failure when it has
// none. A caller that knows better (for example that a refused token during deregistration is a
// runtime failure) re-marks an inner error.
func Code(err error) int {
	if err == nil {
		return OK
	}
	switch Kind(err) {
	case ErrConfig:
		return Usage
	case ErrAuth:
		return Denied
	}
	return Failure
}

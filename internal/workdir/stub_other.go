//go:build !linux

package workdir

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// The entrypoint runs in Linux containers only; this stub lets the module build (and its other
// packages be tested) on developer machines.

type slotLock struct{}

var errUnsupported = errors.New("work directory preparation needs Linux (running on " + runtime.GOOS + ")")

// Detect is not available outside Linux.
func Detect(path string) (Mount, error) { return Mount{}, fmt.Errorf("%s: %w", path, errUnsupported) }

// Prepare is not available outside Linux.
func Prepare(ctx context.Context, o Options) (*Lease, error) {
	return nil, exit.Config(errUnsupported)
}

// Release does nothing outside Linux.
func (l *Lease) Release() error { return nil }

// Check is not available outside Linux.
func Check(o Options) ([]Finding, error) {
	err := exit.Config(errUnsupported)
	return []Finding{{Level: LevelError, Path: o.Root, Message: err.Error(), Err: err}}, err
}

// PrepareTools is not available outside Linux.
func PrepareTools(dir string, uid, gid int) error { return exit.Config(errUnsupported) }

// SecureAgentDir only checks the path outside Linux.
func SecureAgentDir(path string, uid, gid int, repair bool) (string, []string, error) {
	return path, nil, nil
}

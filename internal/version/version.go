// Package version holds the build's version and commit, stamped by the Makefile with -ldflags.
package version

import (
	"fmt"
	"runtime"
)

// Set at link time: -X github.com/azp-entrypoint/azp-entrypoint/internal/version.Version=...
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is the `version` command's output.
func String() string {
	return fmt.Sprintf("azp-entrypoint %s (commit %s, %s, %s/%s)", Version, Commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

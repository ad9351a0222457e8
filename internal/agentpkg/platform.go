package agentpkg

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
)

// Platforms are the package ids (.NET runtime identifiers) the entrypoint supports.
var Platforms = []string{"linux-x64", "linux-arm64", "linux-musl-x64", "linux-musl-arm64"}

// ValidPlatform reports whether p is one of Platforms.
func ValidPlatform(p string) bool { return slices.Contains(Platforms, p) }

// DetectPlatform returns the package id for the running system: the CPU architecture of this
// process and the C library of the root file system.
func DetectPlatform() (string, error) {
	return detectPlatform("/", runtime.GOOS, runtime.GOARCH)
}

// detectPlatform looks at root instead of "/" so that tests can use a fake root. The C library is
// read from the system, not from how this (static) binary was built: the same binary runs on
// Alpine and on Debian images.
func detectPlatform(root, goos, goarch string) (string, error) {
	if goos != "linux" {
		return "", fmt.Errorf("detect agent platform: %s is not supported (set AZP_AGENT_PLATFORM to one of %v)", goos, Platforms)
	}
	var arch string
	switch goarch {
	case "amd64":
		arch = "x64"
	case "arm64":
		arch = "arm64"
	default:
		return "", fmt.Errorf("detect agent platform: architecture %s has no supported agent package (set AZP_AGENT_PLATFORM to one of %v)", goarch, Platforms)
	}
	if isMusl(root) {
		return "linux-musl-" + arch, nil
	}
	return "linux-" + arch, nil
}

// isMusl: Alpine says so in /etc/alpine-release. Elsewhere the dynamic loader tells: a musl
// loader without a glibc one. Debian's "musl" package installs /lib/ld-musl-*.so.1 next to
// glibc, so the musl loader alone is not enough.
func isMusl(root string) bool {
	if _, err := os.Stat(filepath.Join(root, "etc/alpine-release")); err == nil {
		return true
	}
	has := func(patterns ...string) bool {
		for _, p := range patterns {
			if m, _ := filepath.Glob(filepath.Join(root, p)); len(m) > 0 {
				return true
			}
		}
		return false
	}
	musl := has("lib/ld-musl-*.so.1", "usr/lib/ld-musl-*.so.1")
	if !musl {
		return false
	}
	glibc := has("lib/ld-linux-*.so.*", "lib64/ld-linux-*.so.*", "usr/lib/ld-linux-*.so.*",
		"usr/lib64/ld-linux-*.so.*", "lib/*-linux-gnu/ld-linux-*.so.*", "usr/lib/*-linux-gnu/ld-linux-*.so.*")
	return !glibc
}

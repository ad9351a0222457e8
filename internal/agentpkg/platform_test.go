package agentpkg

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDetectPlatform(t *testing.T) {
	tests := []struct {
		name   string
		files  []string
		goos   string
		goarch string
		want   string
		fail   bool
	}{
		{name: "debian amd64", files: []string{"lib64/ld-linux-x86-64.so.2"}, goos: "linux", goarch: "amd64", want: "linux-x64"},
		{name: "empty root is glibc", goos: "linux", goarch: "amd64", want: "linux-x64"},
		{name: "debian arm64", files: []string{"lib/ld-linux-aarch64.so.1"}, goos: "linux", goarch: "arm64", want: "linux-arm64"},
		{name: "alpine release", files: []string{"etc/alpine-release"}, goos: "linux", goarch: "amd64", want: "linux-musl-x64"},
		{name: "musl loader only", files: []string{"lib/ld-musl-aarch64.so.1"}, goos: "linux", goarch: "arm64", want: "linux-musl-arm64"},
		{name: "debian with the musl package", files: []string{"lib/ld-musl-x86_64.so.1", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"}, goos: "linux", goarch: "amd64", want: "linux-x64"},
		{name: "alpine with gcompat", files: []string{"etc/alpine-release", "lib/ld-linux-x86-64.so.2"}, goos: "linux", goarch: "amd64", want: "linux-musl-x64"},
		{name: "32-bit arm", goos: "linux", goarch: "arm", fail: true},
		{name: "not linux", goos: "darwin", goarch: "arm64", fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(root, f)
				os.MkdirAll(filepath.Dir(p), 0o755)
				os.WriteFile(p, nil, 0o644)
			}
			got, err := detectPlatform(root, tt.goos, tt.goarch)
			if tt.fail {
				if err == nil || got != "" {
					t.Fatalf("got %q, %v; want an error", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
			if !ValidPlatform(got) {
				t.Errorf("detected %q is not valid", got)
			}
		})
	}
	if _, err := DetectPlatform(); err != nil {
		t.Errorf("DetectPlatform on this machine: %v", err)
	}
}

func TestValidPlatform(t *testing.T) {
	for _, p := range []string{"linux-x64", "linux-arm64", "linux-musl-x64", "linux-musl-arm64"} {
		if !ValidPlatform(p) {
			t.Errorf("%s should be valid", p)
		}
	}
	for _, p := range []string{"", "linux-arm", "win-x64", "osx-arm64", "linux-x64 ", "LINUX-X64"} {
		if ValidPlatform(p) {
			t.Errorf("%q should be invalid", p)
		}
	}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"4.261.0", "4.261.0", 0},
		{"4.261.0", "4.260.1", 1},
		{"4.9.0", "4.10.0", -1},
		{"3.248.0", "4.248.0", -1},
		{"4.261", "4.261.0", 0},
		{"v4.261.0", "4.261.0", 0},
		{"4.261.0", "4.261.0-rc", -1}, // numeric sorts before text
		{"4.261.0-rc", "4.261.0-rc", 0},
	}
	for _, tt := range tests {
		if got := Compare(tt.a, tt.b); got != tt.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := Compare(tt.b, tt.a); got != -tt.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestPublicURL(t *testing.T) {
	want := "https://download.agent.dev.azure.com/agent/4.261.0/vsts-agent-linux-musl-x64-4.261.0.tar.gz"
	if got := PublicURL("4.261.0", "linux-musl-x64"); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

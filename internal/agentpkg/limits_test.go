package agentpkg

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// bomb is a .tar.gz of one file of n zero bytes (compresses about 1000:1).
func bomb(t *testing.T, n int64) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "./bin/Agent.Listener", Typeflag: tar.TypeReg, Mode: 0o755, Size: n})
	zero := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(zero)) {
		tw.Write(zero[:min(left, int64(len(zero)))])
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// written sums the sizes of the regular files under dir.
func written(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func TestGzipBombIsRefusedBeforeItIsWritten(t *testing.T) {
	s := newServer(t)
	pkg := bomb(t, 64<<20)
	l := &fakeLister{pkgs: []Package{{Version: "4.261.0", URL: s.add("bomb.tar.gz", pkg), SHA256: sha(pkg)}}}
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.MaxBytes = 8 << 20
	_, err := Ensure(context.Background(), o, l)
	assertCode(t, err, 1, "more than 8388608 bytes", "decompression bomb")
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("not ErrTooLarge: %v", err)
	}
	assertNoPackage(t, dir)
	if n := written(filepath.Dir(dir)); n > 0 {
		t.Errorf("%d bytes of the bomb were written", n)
	}
}

func TestTooManyEntriesAreRefused(t *testing.T) {
	s := newServer(t)
	var es []entry
	es = append(es, dir("./"), dir("./bin/"))
	for i := range 500 {
		es = append(es, file(fmt.Sprintf("./bin/f%03d", i), "x", 0o644))
	}
	pkg := buildTarGz(t, es)
	l := &fakeLister{pkgs: []Package{{Version: "4.261.0", URL: s.add("many.tar.gz", pkg), SHA256: sha(pkg)}}}
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.MaxEntries = 100
	_, err := Ensure(context.Background(), o, l)
	assertCode(t, err, 1, "more than 100 entries")
	assertNoPackage(t, dir)
}

// getter is a Lister that also answers the pinned-version route.
type getter struct {
	fakeLister
	byVersion map[string]Package
	asked     []string
}

func (g *getter) Package(_ context.Context, platform, version string) (Package, error) {
	g.asked = append(g.asked, platform+"/"+version)
	p, ok := g.byVersion[version]
	if !ok {
		return Package{}, fmt.Errorf("%w: 404", ErrNotPublished)
	}
	return p, nil
}

func TestPinnedVersionUsesTheVersionRouteWithItsHash(t *testing.T) {
	s := newServer(t)
	p250 := buildTarGz(t, agentEntries("4.250.0"))
	g := &getter{byVersion: map[string]Package{
		"4.250.0": {Version: "4.250.0", URL: s.add("250.tar.gz", p250), SHA256: sha(p250)},
		"4.240.0": {Version: "4.240.0", URL: s.add("240.tar.gz", p250)}, // no hashValue
	}}
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.250.0"
	m, err := Ensure(context.Background(), o, g)
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != sha(p250) || strings.Join(g.asked, ",") != "linux-x64/4.250.0" || len(g.calls) != 0 {
		t.Errorf("marker %+v, asked %v, listed %v", m, g.asked, g.calls)
	}
	// A pinned package the server gives without its hash is not installed.
	o.Version = "4.240.0"
	_, err = Ensure(context.Background(), o, g)
	assertCode(t, err, 1, "without a hashValue")
	// A version the server does not publish is a configuration error.
	o.Version = "4.1.0"
	_, err = Ensure(context.Background(), o, g)
	assertCode(t, err, 2, "AZP_AGENT_VERSION", "4.1.0")
	assertInstalled(t, dir, "4.250.0")
}

func TestRetiredCDNIsRewritten(t *testing.T) {
	l := &fakeLister{pkgs: []Package{{Version: "3.248.0", SHA256: strings.Repeat("a", 64),
		URL: "https://vstsagentpackage.azureedge.net/agent/3.248.0/vsts-agent-linux-x64-3.248.0.tar.gz"}}}
	o, rec := testOptions(t, t.TempDir())
	pkg, _, err := choose(context.Background(), o.logger(), l, "linux-x64", "")
	if err != nil {
		t.Fatal(err)
	}
	if pkg.URL != "https://download.agent.dev.azure.com/agent/3.248.0/vsts-agent-linux-x64-3.248.0.tar.gz" {
		t.Errorf("URL %s", pkg.URL)
	}
	if len(rec.find("agent package URL names the retired CDN; using its successor")) != 1 {
		t.Error("rewrite not logged")
	}
	if u, ok := currentCDN("https://mirror.example/agent/x.tar.gz"); ok || u != "https://mirror.example/agent/x.tar.gz" {
		t.Errorf("other host rewritten: %s", u)
	}
}

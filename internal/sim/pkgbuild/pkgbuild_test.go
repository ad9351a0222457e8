package pkgbuild_test

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

// fakeBinary stands in for the azp-sim binary: pkgbuild only copies it.
func fakeBinary(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "azp-sim")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho fake\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

type entry struct {
	hdr  tar.Header
	data []byte
}

// entries reads the package; err is the first read error (e.g. a truncated stream).
func entries(t *testing.T, path string) ([]entry, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	var out []entry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return out, err
		}
		out = append(out, entry{*h, b})
	}
}

func fileHash(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestBuildGood(t *testing.T) {
	bin := fakeBinary(t)
	opts := pkgbuild.Options{Version: "4.261.0", Platform: "linux-musl-arm64", AgentBinary: bin, OutDir: t.TempDir()}
	res, err := pkgbuild.Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Filename != "vsts-agent-linux-musl-arm64-4.261.0.tar.gz" || filepath.Base(res.Path) != res.Filename || !filepath.IsAbs(res.Path) {
		t.Errorf("result %+v", res)
	}
	if got := fileHash(t, res.Path); got != res.SHA256 {
		t.Errorf("SHA256 %s, file hash %s", res.SHA256, got)
	}
	if st, _ := os.Stat(res.Path); st.Size() != res.Size {
		t.Errorf("size %d, file %d", res.Size, st.Size())
	}
	// Deterministic: the same inputs give the same bytes.
	opts.OutDir = t.TempDir()
	again, err := pkgbuild.Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.SHA256 != res.SHA256 {
		t.Errorf("two builds differ: %s vs %s", res.SHA256, again.SHA256)
	}

	es, err := entries(t, res.Path)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]entry{}
	for _, e := range es {
		byName[e.hdr.Name] = e
		if strings.HasPrefix(e.hdr.Name, "/") || strings.Contains(e.hdr.Name, "..") {
			t.Errorf("good package has entry %q", e.hdr.Name)
		}
		if !e.hdr.ModTime.Equal(pkgbuild.DefaultModTime) {
			t.Errorf("%s mtime %v", e.hdr.Name, e.hdr.ModTime)
		}
	}
	want := map[string]int64{
		"./config.sh": 0o755, "./run.sh": 0o755, "./env.sh": 0o755, "./license.html": 0o644,
		"./bin/Agent.Listener": 0o755, "./bin/Agent.Worker": 0o755, "./bin/en-US/strings.json": 0o644,
		"./bin/de-DE/strings.json": 0o644, "./bin/Agent.Listener.deps.json": 0o644, "./bin/Agent.Worker.deps.json": 0o644,
	}
	for name, mode := range want {
		e, ok := byName[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if e.hdr.Mode != mode || e.hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: mode %o type %c", name, e.hdr.Mode, e.hdr.Typeflag)
		}
	}
	if string(byName["./bin/Agent.Listener"].data) != "#!/bin/sh\necho fake\n" {
		t.Error("bin/Agent.Listener is not a copy of the binary")
	}
	// The version and runtime identifier are stamped the way `dotnet publish` stamps them.
	var deps struct {
		RuntimeTarget struct{ Name string } `json:"runtimeTarget"`
		Libraries     map[string]struct{ Type string }
	}
	if err := json.Unmarshal(byName["./bin/Agent.Listener.deps.json"].data, &deps); err != nil ||
		deps.RuntimeTarget.Name != ".NETCoreApp,Version=v8.0/linux-musl-arm64" || deps.Libraries["Agent.Listener/4.261.0"].Type != "project" {
		t.Errorf("Agent.Listener.deps.json %+v %v", deps, err)
	}
	if _, ok := byName["./"]; !ok || es[0].hdr.Name != "./" {
		t.Errorf("the first entry is %q, not the archive root \"./\" that `tar -czf x -C layout .` writes", es[0].hdr.Name)
	}
	var de map[string]string
	if err := json.Unmarshal(byName["./bin/de-DE/strings.json"].data, &de); err != nil || de["ListenForJobs"] != "{0:u}: Auf Aufträge lauschen" {
		t.Errorf("de-DE strings: %v %v", de["ListenForJobs"], err)
	}
	run := string(byName["./run.sh"].data)
	if !strings.Contains(run, `bin/Agent.Listener run "$@"`) || !strings.Contains(run, "returnCode == 4") || regexp.MustCompile(`(?m)^\s*(trap|exec)\b`).MatchString(run) {
		t.Errorf("run.sh does not mirror the real one:\n%s", run)
	}
}

func TestBuildFiller(t *testing.T) {
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(tree, "a", "b", "file.txt"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(tree, "tool"), []byte("#!/bin/sh\n"), 0o700)
	os.Symlink("/etc/passwd", filepath.Join(tree, "link")) // must be skipped
	const n = 3<<20 + 5
	res, err := pkgbuild.Build(pkgbuild.Options{Version: "1.0.0", AgentBinary: fakeBinary(t), OutDir: t.TempDir(), FillerBytes: n, FillerDir: tree})
	if err != nil {
		t.Fatal(err)
	}
	es, err := entries(t, res.Path)
	if err != nil {
		t.Fatal(err)
	}
	var filler int64
	names := map[string]tar.Header{}
	for _, e := range es {
		names[e.hdr.Name] = e.hdr
		if strings.HasPrefix(e.hdr.Name, "./externals/filler/") && e.hdr.Typeflag == tar.TypeReg {
			filler += e.hdr.Size
		}
	}
	if filler != n {
		t.Errorf("filler %d bytes, want %d", filler, n)
	}
	// Half of the filler is random: the package cannot compress to nothing.
	if res.Size < n/3 || res.Size > n {
		t.Errorf("package size %d for %d filler bytes", res.Size, n)
	}
	if h, ok := names["./externals/tree/a/b/file.txt"]; !ok || h.Size != 5 {
		t.Errorf("tree file missing: %v", names)
	}
	if h := names["./externals/tree/tool"]; h.Mode != 0o755 {
		t.Errorf("executable tree file mode %o", h.Mode)
	}
	if _, ok := names["./externals/tree/link"]; ok {
		t.Error("symlink copied from the filler tree")
	}
}

func TestBuildVariants(t *testing.T) {
	bin := fakeBinary(t)
	for _, v := range pkgbuild.Variants {
		t.Run(string(v), func(t *testing.T) {
			res, err := pkgbuild.Build(pkgbuild.Options{Version: "4.0.1", AgentBinary: bin, OutDir: t.TempDir(), Variant: v})
			if err != nil {
				t.Fatal(err)
			}
			actual := fileHash(t, res.Path)
			if (v == pkgbuild.WrongHash) == (actual == res.SHA256) {
				t.Errorf("SHA256 %s, file %s", res.SHA256, actual)
			}
			es, rerr := entries(t, res.Path)
			if v == pkgbuild.Truncated {
				if rerr == nil {
					t.Error("truncated package reads without error")
				}
				return
			}
			if rerr != nil {
				t.Fatal(rerr)
			}
			last := es[len(es)-1].hdr
			switch v {
			case pkgbuild.WrongHash:
				if strings.Contains(last.Name, "..") || strings.HasPrefix(last.Name, "/") {
					t.Errorf("wrong-hash package has bad entry %q", last.Name)
				}
			case pkgbuild.Traversal:
				if !strings.HasPrefix(last.Name, "../") {
					t.Errorf("last entry %q", last.Name)
				}
			case pkgbuild.Absolute:
				if !strings.HasPrefix(last.Name, "/") {
					t.Errorf("last entry %q", last.Name)
				}
			case pkgbuild.SymlinkEscape:
				link := es[len(es)-2].hdr
				if link.Typeflag != tar.TypeSymlink || !strings.HasPrefix(link.Linkname, "../..") || !strings.HasPrefix(last.Name, link.Name+"/") {
					t.Errorf("entries %q -> %q, then %q", link.Name, link.Linkname, last.Name)
				}
			case pkgbuild.HardlinkEscape:
				if last.Typeflag != tar.TypeLink || !strings.HasPrefix(last.Linkname, "../..") {
					t.Errorf("last entry %q type %c -> %q", last.Name, last.Typeflag, last.Linkname)
				}
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	bin := fakeBinary(t)
	for name, o := range map[string]pkgbuild.Options{
		"no version": {AgentBinary: bin, OutDir: t.TempDir()},
		"no binary":  {Version: "1.0.0", OutDir: t.TempDir()},
		"missing":    {Version: "1.0.0", AgentBinary: filepath.Join(t.TempDir(), "nope"), OutDir: t.TempDir()},
		"no out":     {Version: "1.0.0", AgentBinary: bin},
		"variant":    {Version: "1.0.0", AgentBinary: bin, OutDir: t.TempDir(), Variant: "evil"},
	} {
		if _, err := pkgbuild.Build(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

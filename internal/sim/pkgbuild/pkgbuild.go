// Package pkgbuild builds fake Azure Pipelines agent packages (vsts-agent-<platform>-<version>.tar.gz)
// for the simulator and for tests: the layout of the real Linux package (config.sh, run.sh, env.sh,
// bin/Agent.Listener, bin/Agent.Worker, their .deps.json manifests stamped with the version and
// runtime identifier, bin/<culture>/strings.json, license.html, entries named "./…") with the azp-sim binary
// standing in for the .NET agent, plus malicious or broken variants that an installer must reject.
//
// It is a test double: nothing here is ever shipped in the product image, and the product binary
// must never import it. Output is deterministic (fixed modification times, sorted entries, fixed
// filler) so that hashes are stable across builds.
package pkgbuild

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Variant selects a broken or malicious package. The zero value builds a good package.
type Variant string

// Variants. Each bad variant keeps the good content and adds or changes exactly one thing.
const (
	Good Variant = ""
	// WrongHash builds a good file but Result.SHA256 is not its hash (the listing lies).
	WrongHash Variant = "wrong-hash"
	// Truncated cuts the gzip stream in half; Result.SHA256 is the hash of the truncated file, so only
	// extraction can notice.
	Truncated Variant = "truncated"
	// Traversal adds a regular file entry named "../<name>" after the good entries.
	Traversal Variant = "traversal"
	// Absolute adds a regular file entry with an absolute path (/tmp/azp-pkgbuild-absolute-<version>).
	Absolute Variant = "absolute"
	// SymlinkEscape adds a symlink "externals/escape" -> "../../azp-pkgbuild-outside" and then a file
	// written through it ("externals/escape/pwned").
	SymlinkEscape Variant = "symlink-escape"
	// HardlinkEscape adds a hard link "bin/escape" whose target is "../../azp-pkgbuild-outside".
	HardlinkEscape Variant = "hardlink-escape"
)

// Variants lists every bad variant, for table-driven tests.
var Variants = []Variant{WrongHash, Truncated, Traversal, Absolute, SymlinkEscape, HardlinkEscape}

// Platforms are the runtime identifiers the simulator registers packages for.
var Platforms = []string{"linux-x64", "linux-arm64", "linux-musl-x64", "linux-musl-arm64"}

// DefaultModTime is the modification time of every entry unless Options.ModTime is set.
var DefaultModTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Options describe one package.
type Options struct {
	Version     string    // required, e.g. "4.261.0"
	Platform    string    // default "linux-x64"
	AgentBinary string    // required: path to the azp-sim binary, copied to bin/Agent.Listener and bin/Agent.Worker
	OutDir      string    // required: where the .tar.gz is written (created if missing)
	Filename    string    // default "vsts-agent-<platform>-<version>.tar.gz"
	FillerBytes int64     // extra deterministic content (half random, half text) under externals/filler/
	FillerDir   string    // a directory tree copied under externals/tree/ (e.g. $(go env GOROOT)/src)
	Variant     Variant   // Good by default
	ModTime     time.Time // default DefaultModTime
}

// Result describes the written package.
type Result struct {
	Path     string // absolute path of the .tar.gz
	Filename string // base name
	SHA256   string // lower-case hex; for WrongHash deliberately not the file's hash
	Size     int64  // file size in bytes
	Version  string
	Platform string
}

// Build writes the package described by opts.
func Build(opts Options) (Result, error) {
	if opts.Version == "" {
		return Result{}, errors.New("pkgbuild: Options.Version is required")
	}
	if opts.AgentBinary == "" {
		return Result{}, errors.New("pkgbuild: Options.AgentBinary is required (path of the azp-sim binary)")
	}
	if opts.OutDir == "" {
		return Result{}, errors.New("pkgbuild: Options.OutDir is required")
	}
	if opts.Platform == "" {
		opts.Platform = "linux-x64"
	}
	if opts.ModTime.IsZero() {
		opts.ModTime = DefaultModTime
	}
	if opts.Filename == "" {
		opts.Filename = fmt.Sprintf("vsts-agent-%s-%s.tar.gz", opts.Platform, opts.Version)
	}
	switch opts.Variant {
	case Good, WrongHash, Truncated, Traversal, Absolute, SymlinkEscape, HardlinkEscape:
	default:
		return Result{}, fmt.Errorf("pkgbuild: unknown variant %q", opts.Variant)
	}
	bin, err := os.ReadFile(opts.AgentBinary)
	if err != nil {
		return Result{}, fmt.Errorf("pkgbuild: read agent binary (Options.AgentBinary): %w", err)
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("pkgbuild: create output directory: %w", err)
	}
	out := filepath.Join(opts.OutDir, opts.Filename)
	if abs, err := filepath.Abs(out); err == nil {
		out = abs
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return Result{}, fmt.Errorf("pkgbuild: create %s: %w", tmp, err)
	}
	defer os.Remove(tmp)
	h := sha256.New()
	w := &tarWriter{opts: opts}
	err = w.write(io.MultiWriter(f, h), bin)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Result{}, fmt.Errorf("pkgbuild: write %s: %w", out, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if opts.Variant == Truncated {
		st, err := os.Stat(tmp)
		if err != nil {
			return Result{}, err
		}
		if err := os.Truncate(tmp, st.Size()/2); err != nil {
			return Result{}, fmt.Errorf("pkgbuild: truncate: %w", err)
		}
		if sum, err = fileSHA256(tmp); err != nil {
			return Result{}, err
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		return Result{}, fmt.Errorf("pkgbuild: rename to %s: %w", out, err)
	}
	st, err := os.Stat(out)
	if err != nil {
		return Result{}, err
	}
	if opts.Variant == WrongHash {
		other := sha256.Sum256([]byte("not the package " + sum))
		sum = hex.EncodeToString(other[:])
	}
	return Result{Path: out, Filename: opts.Filename, SHA256: sum, Size: st.Size(), Version: opts.Version, Platform: opts.Platform}, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type tarWriter struct {
	opts Options
	tw   *tar.Writer
}

func (w *tarWriter) write(dst io.Writer, bin []byte) error {
	zw, err := gzip.NewWriterLevel(dst, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	w.tw = tar.NewWriter(zw)
	if err := w.content(bin); err != nil {
		return err
	}
	if err := w.tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func (w *tarWriter) dir(name string) error {
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimSuffix(name, "/") + "/", Mode: 0o755, ModTime: w.opts.ModTime, Format: tar.FormatPAX})
}

func (w *tarWriter) file(name string, mode int64, data []byte) error {
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: w.opts.ModTime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := w.tw.Write(data)
	return err
}

func (w *tarWriter) content(bin []byte) error {
	o := w.opts
	v := VersionInfo{Version: o.Version, Platform: o.Platform}
	// The real package is made by `tar -czf <name>.tar.gz -C <layout> .` (src/dev.sh, cmd_package),
	// so every entry starts with "./" and the first one is the root itself.
	steps := []func() error{
		func() error { return w.dir(".") },
		func() error { return w.dir("./bin") },
		func() error { return w.file("./bin/Agent.Listener", 0o755, bin) },
		func() error { return w.file("./bin/"+DepsFile, 0o644, depsJSON("Agent.Listener", v)) },
		func() error { return w.file("./bin/Agent.Worker", 0o755, bin) },
		func() error { return w.file("./bin/Agent.Worker.deps.json", 0o644, depsJSON("Agent.Worker", v)) },
	}
	for _, c := range Cultures {
		steps = append(steps,
			func() error { return w.dir("./bin/" + c) },
			func() error { return w.file("./bin/"+c+"/strings.json", 0o644, stringsFile(c)) })
	}
	steps = append(steps,
		func() error { return w.file("./config.sh", 0o755, []byte(configSh)) },
		func() error { return w.file("./env.sh", 0o755, []byte(envSh)) },
		func() error { return w.dir("./externals") },
		func() error { return w.file("./license.html", 0o644, []byte(licenseHTML)) },
		func() error { return w.file("./run.sh", 0o755, []byte(runSh)) },
	)
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	if o.FillerBytes > 0 {
		if err := w.filler(o.FillerBytes); err != nil {
			return err
		}
	}
	if o.FillerDir != "" {
		if err := w.tree(o.FillerDir); err != nil {
			return fmt.Errorf("copy filler directory %s: %w", o.FillerDir, err)
		}
	}
	return w.bad()
}

// filler writes n bytes in files of at most 1 MiB: alternating chunks of incompressible random bytes
// and repetitive text, so the compressed size is roughly half the raw size, like a real agent.
func (w *tarWriter) filler(n int64) error {
	if err := w.dir("./externals/filler"); err != nil {
		return err
	}
	rng := rand.New(rand.NewChaCha8([32]byte{'a', 'z', 'p'}))
	const part = 1 << 20
	text := []byte(strings.Repeat("The quick brown fox jumps over the lazy agent. ", 32))
	for i := 0; n > 0; i++ {
		size := min(n, part)
		buf := make([]byte, size)
		for off := int64(0); off < size; off += 4096 {
			end := min(off+4096, size)
			if (off/4096)%2 == 0 {
				for j := off; j < end; j++ {
					buf[j] = byte(rng.Uint32())
				}
			} else {
				copy(buf[off:end], text)
			}
		}
		if err := w.file(fmt.Sprintf("./externals/filler/part-%04d.bin", i), 0o644, buf); err != nil {
			return err
		}
		n -= size
	}
	return nil
}

// tree copies regular files and directories of root (in lexical order) under externals/tree/.
func (w *tarWriter) tree(root string) error {
	if err := w.dir("./externals/tree"); err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		name := "./" + path.Join("externals/tree", filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			return w.dir(name)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			mode := int64(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: info.Size(), ModTime: w.opts.ModTime, Format: tar.FormatPAX}); err != nil {
				return err
			}
			_, err = io.CopyN(w.tw, f, info.Size())
			return err
		}
		return nil // symlinks and special files are skipped: the filler must stay harmless
	})
}

func (w *tarWriter) bad() error {
	o := w.opts
	evil := []byte("this file must never be written: the package tried to escape its directory\n")
	switch o.Variant {
	case Traversal:
		return w.file("../azp-pkgbuild-traversal-"+o.Version, 0o644, evil)
	case Absolute:
		return w.file("/tmp/azp-pkgbuild-absolute-"+o.Version, 0o644, evil)
	case SymlinkEscape:
		if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "externals/escape", Linkname: "../../azp-pkgbuild-outside", Mode: 0o777, ModTime: o.ModTime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		return w.file("externals/escape/pwned", 0o644, evil)
	case HardlinkEscape:
		return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: "bin/escape", Linkname: "../../azp-pkgbuild-outside", Mode: 0o644, ModTime: o.ModTime, Format: tar.FormatPAX})
	}
	return nil
}

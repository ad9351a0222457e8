package agentpkg

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// ErrUnsafePackage marks a package rejected for an entry that could write or point outside the
// target directory, or of a type an agent package never has. errors.Is works on returned errors.
var ErrUnsafePackage = errors.New("unsafe agent package")

// owner gives extracted entries to the agent's run-as user while they are created, so that no
// recursive chown over tens of thousands of files is needed afterwards. Only root can do that; an
// unprivileged installer owns what it creates anyway.
type owner struct {
	uid, gid int
	on       bool
}

func newOwner(uid, gid int) owner {
	return owner{uid: uid, gid: gid, on: os.Geteuid() == 0 && (uid > 0 || gid > 0)}
}

func (o owner) lchown(p string) error {
	if !o.on {
		return nil
	}
	return os.Lchown(p, o.uid, o.gid)
}

func (o owner) fchown(f *os.File) error {
	if !o.on {
		return nil
	}
	return f.Chown(o.uid, o.gid)
}

const (
	kindDir byte = iota + 1
	kindFile
	kindSymlink
	kindHardlink
)

// smallFile: files up to this size are read from the tar stream into memory and written by a
// pool of writers, so that file creation (the slow part on overlayfs and EFS) overlaps with
// decompression. Bigger files are streamed to disk by the reader itself.
const smallFile = 1 << 20

// inFlight bounds the bytes of small files read from the stream but not yet written: what the
// writer pool may hold at once (without it, 2×workers queued files of up to 1 MiB each plus the
// ones being written).
const inFlight = 2 << 20

type fileJob struct {
	path string
	data []byte
	mode os.FileMode
}

// budget is a byte semaphore.
type budget struct {
	mu   sync.Mutex
	cond *sync.Cond
	free int
}

func newBudget(n int) *budget {
	b := &budget{free: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) take(n int) {
	b.mu.Lock()
	for b.free < n {
		b.cond.Wait()
	}
	b.free -= n
	b.mu.Unlock()
}

func (b *budget) give(n int) {
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// extractor writes one tar stream into root, a fresh empty directory that nothing else touches.
// Because it created everything under root itself, it knows every entry's kind in memory and can
// check paths and symlinks without asking the file system.
type extractor struct {
	root  string
	own   owner
	lim   limits
	count int               // entries so far
	size  int64             // bytes of regular files so far
	kinds map[string]byte   // root-relative clean path -> kind
	links map[string]string // symlink path -> target
	top   []string          // top-level names, in order of appearance
	dirs  []dirMode
	hard  [][2]string // deferred hard links: name, target

	jobs chan fileJob
	mem  *budget
	buf  []byte // the reader's copy buffer for files it writes itself
	wg   sync.WaitGroup
	mu   sync.Mutex
	werr error
}

type dirMode struct {
	path string
	mode os.FileMode
}

func newExtractor(root string, own owner, lim limits) *extractor {
	return &extractor{root: root, own: own, lim: lim, kinds: map[string]byte{}, links: map[string]string{}}
}

// ErrTooLarge marks a package that expands beyond the installer's limits (a gzip bomb, or not an
// agent package): nothing of it is kept.
var ErrTooLarge = errors.New("agent package too large")

// limits cap what one package may expand to. A real agent package (4.x, linux-x64) expands to
// about 500 MB in about 10,000 entries; the defaults leave room for growth.
type limits struct {
	bytes   int64 // total size of the regular files
	entries int   // tar entries of any kind
}

const (
	defaultMaxBytes   = 4 << 30
	defaultMaxEntries = 200_000
)

// check counts one entry of size bytes (regular files) before anything of it is written.
func (x *extractor) check(hdr *tar.Header) error {
	x.count++
	if x.lim.entries > 0 && x.count > x.lim.entries {
		return fmt.Errorf("%w: more than %d entries (at %q); a real agent package has far fewer, so this is a broken or hostile package (a decompression bomb?)", ErrTooLarge, x.lim.entries, hdr.Name)
	}
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == '\x00' {
		x.size += hdr.Size
		if x.lim.bytes > 0 && (hdr.Size < 0 || x.size > x.lim.bytes) {
			return fmt.Errorf("%w: its files expand to more than %d bytes (at %q, %d bytes); a real agent package is far smaller, so this is a broken or hostile package (a decompression bomb?)", ErrTooLarge, x.lim.bytes, hdr.Name, hdr.Size)
		}
	}
	return nil
}

// extract reads the whole tar stream r into x.root. On error the caller removes x.root.
func (x *extractor) extract(ctx context.Context, r io.Reader) (err error) {
	workers := min(4, 2*runtime.GOMAXPROCS(0))
	x.jobs = make(chan fileJob, 2*workers)
	x.mem = newBudget(max(inFlight, smallFile))
	for range workers {
		x.wg.Add(1)
		go x.writer()
	}
	defer func() {
		if x.jobs != nil {
			close(x.jobs)
			x.wg.Wait()
		}
		if err == nil {
			err = x.writeErr()
		}
	}()

	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := x.writeErr(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return readError(err)
		}
		if err := x.entry(tr, hdr); err != nil {
			return err
		}
	}
	close(x.jobs)
	x.wg.Wait()
	x.jobs = nil
	if err := x.writeErr(); err != nil {
		return err
	}
	return x.finish()
}

func (x *extractor) entry(tr *tar.Reader, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if err := x.check(hdr); err != nil {
		return err
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" { // the archive's "./": the root exists already
		if hdr.Typeflag == tar.TypeDir {
			return nil
		}
		return fmt.Errorf("%w: entry %q is not a directory but names the package root", ErrUnsafePackage, hdr.Name)
	}
	if err := x.parents(name); err != nil {
		return err
	}
	full := filepath.Join(x.root, filepath.FromSlash(name))
	mode := os.FileMode(hdr.Mode) & os.ModePerm // setuid/setgid/sticky are dropped on purpose
	if k, dup := x.kinds[name]; dup {
		if k == kindDir && hdr.Typeflag == tar.TypeDir {
			x.dirs = append(x.dirs, dirMode{full, mode})
			return nil
		}
		return fmt.Errorf("%w: entry %q appears twice", ErrUnsafePackage, hdr.Name)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := x.mkdir(name, full); err != nil {
			return err
		}
		x.dirs = append(x.dirs, dirMode{full, mode})
	case tar.TypeReg, '\x00':
		x.add(name, kindFile)
		if hdr.Size <= smallFile {
			data := make([]byte, hdr.Size)
			x.mem.take(len(data))
			if _, err := io.ReadFull(tr, data); err != nil {
				x.mem.give(len(data))
				return readError(err)
			}
			x.jobs <- fileJob{path: full, data: data, mode: mode}
			return nil
		}
		if x.buf == nil {
			x.buf = make([]byte, copyBufSize)
		}
		return x.writeFile(full, tr, x.buf, mode)
	case tar.TypeSymlink:
		t := hdr.Linkname
		if t == "" || strings.HasPrefix(t, "/") {
			return fmt.Errorf("%w: symlink %q -> %q is absolute or empty", ErrUnsafePackage, hdr.Name, t)
		}
		if lex := path.Join(path.Dir(name), t); lex == ".." || strings.HasPrefix(lex, "../") {
			return fmt.Errorf("%w: symlink %q -> %q points outside the package", ErrUnsafePackage, hdr.Name, t)
		}
		x.add(name, kindSymlink)
		x.links[name] = t
		if err := os.Symlink(t, full); err != nil {
			return fmt.Errorf("extract symlink %s: %w", full, err)
		}
		if err := x.own.lchown(full); err != nil {
			return fmt.Errorf("give %s to %d:%d: %w", full, x.own.uid, x.own.gid, err)
		}
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("%w: hard link %q -> %q points outside the package", ErrUnsafePackage, hdr.Name, hdr.Linkname)
		}
		if x.kinds[target] != kindFile {
			return fmt.Errorf("%w: hard link %q -> %q does not name a regular file earlier in the package", ErrUnsafePackage, hdr.Name, hdr.Linkname)
		}
		x.add(name, kindHardlink)
		x.hard = append(x.hard, [2]string{name, target})
	default:
		return fmt.Errorf("%w: entry %q has type %q, which agent packages do not use", ErrUnsafePackage, hdr.Name, string(hdr.Typeflag))
	}
	return nil
}

// cleanName turns an archive name into a root-relative clean path, rejecting absolute names and
// any ".." component (even one that would stay inside: no real package needs it).
func cleanName(n string) (string, error) {
	if n == "" {
		return "", fmt.Errorf("%w: entry with an empty name", ErrUnsafePackage)
	}
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("%w: entry %q has an absolute path", ErrUnsafePackage, n)
	}
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: entry %q has a \"..\" component", ErrUnsafePackage, n)
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", nil
	}
	return c, nil
}

func (x *extractor) add(name string, k byte) {
	x.kinds[name] = k
	if !strings.Contains(name, "/") {
		x.top = append(x.top, name)
	}
}

// parents makes sure every ancestor of name is a real directory created by this extractor, so
// that no write ever goes through a symlink (or a file) that an earlier entry planted.
func (x *extractor) parents(name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		p := name[:i]
		switch x.kinds[p] {
		case kindDir:
		case 0:
			if err := x.mkdir(p, filepath.Join(x.root, filepath.FromSlash(p))); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: entry %q lies below %q, which is not a directory", ErrUnsafePackage, name, p)
		}
	}
	return nil
}

func (x *extractor) mkdir(name, full string) error {
	// 0700 while extracting; the archive's mode is applied in finish.
	if err := os.Mkdir(full, 0o700); err != nil {
		return fmt.Errorf("extract directory %s: %w", full, err)
	}
	if err := x.own.lchown(full); err != nil {
		return fmt.Errorf("give %s to %d:%d: %w", full, x.own.uid, x.own.gid, err)
	}
	x.add(name, kindDir)
	return nil
}

func (x *extractor) writer() {
	defer x.wg.Done()
	buf := make([]byte, copyBufSize)
	for j := range x.jobs {
		if x.writeErr() == nil { // else drain
			if err := x.writeFile(j.path, bytes.NewReader(j.data), buf, j.mode); err != nil {
				x.fail(err)
			}
		}
		x.mem.give(len(j.data))
	}
}

// copyBufSize is the buffer each extracting goroutine copies file contents through. A plain
// io.Copy to an *os.File allocates a new 32 KiB buffer for every file (File.ReadFrom falls back to
// io.Copy for a reader it cannot splice), about 380 MB of garbage for a 12,000-file package, which
// made the garbage collector grow the heap to three times its live size.
const copyBufSize = 32 << 10

// writerOnly hides the file's ReadFrom so that io.CopyBuffer uses the buffer it is given.
type writerOnly struct{ io.Writer }

func (x *extractor) writeFile(full string, r io.Reader, buf []byte, mode os.FileMode) error {
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("extract %s: %w", full, err)
	}
	err = x.own.fchown(f)
	var rerr error
	if err == nil {
		_, err = io.CopyBuffer(writerOnly{f}, readTagger{r, &rerr}, buf)
	}
	if err == nil {
		err = f.Chmod(mode) // after chown, which would clear some mode bits
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr != nil && errors.Is(err, rerr) {
		return readError(rerr) // the source failed, not the target
	}
	if err != nil {
		return fmt.Errorf("extract %s: %w", full, err)
	}
	return nil
}

// readTagger remembers a read error so that writeFile can tell it from a write error.
type readTagger struct {
	r   io.Reader
	err *error
}

func (t readTagger) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		*t.err = err
	}
	return n, err
}

func (x *extractor) fail(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.werr == nil {
		x.werr = err
	}
}

func (x *extractor) writeErr() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.werr
}

// finish runs once every entry is written: hard links (their targets now exist), the symlink
// check that needs the whole tree, then directory modes, deepest first.
func (x *extractor) finish() error {
	for _, h := range x.hard {
		name := filepath.Join(x.root, filepath.FromSlash(h[0]))
		if err := os.Link(filepath.Join(x.root, filepath.FromSlash(h[1])), name); err != nil {
			return fmt.Errorf("extract hard link %s: %w", name, err)
		}
	}
	for name, t := range x.links {
		if why := x.escapes(name); why != "" {
			return fmt.Errorf("%w: symlink %q -> %q %s", ErrUnsafePackage, name, t, why)
		}
	}
	for i := len(x.dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(x.dirs[i].path, x.dirs[i].mode); err != nil {
			return fmt.Errorf("set mode of %s: %w", x.dirs[i].path, err)
		}
	}
	return nil
}

// escapes resolves symlink name the way the kernel would, using the in-memory tree, and reports
// why it is unsafe: it climbs above the root, or loops. Each symlink was checked lexically on its
// own, but a chain (d/x -> s/.., d/s -> ..) can still climb out.
func (x *extractor) escapes(name string) string {
	var stack []string
	if d := path.Dir(name); d != "." {
		stack = strings.Split(d, "/")
	}
	pending := strings.Split(x.links[name], "/")
	for hops := 0; len(pending) > 0; {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "resolves outside the package through other symlinks"
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		p := strings.Join(stack, "/")
		if x.kinds[p] != kindSymlink {
			continue
		}
		if hops++; hops > 40 { // ELOOP: refuse rather than guess
			return "is part of a symlink loop"
		}
		t := x.links[p]
		stack = stack[:len(stack)-1]
		pending = append(strings.Split(t, "/"), pending...)
	}
	return ""
}

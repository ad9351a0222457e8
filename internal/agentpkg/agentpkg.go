package agentpkg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/redact"
)

// Package is one downloadable agent package, as the server lists it.
type Package struct {
	Version  string // "4.261.0"
	Platform string // "linux-x64"; empty means the platform that was asked for
	URL      string // downloadUrl; empty means PublicURL
	SHA256   string // hashValue: SHA-256 in hex, any case, dashes allowed; empty: not verified
	Filename string // informational; never used as a path
}

// Lister lists the server's agent packages for a platform, newest first. top > 0 asks for at most
// that many ($top); top <= 0 asks for all. The azdo client implements it (adapted by the caller).
type Lister interface {
	Packages(ctx context.Context, platform string, top int) ([]Package, error)
}

// Options configure Ensure and Install. The zero value of every field but Dir is usable.
type Options struct {
	Dir      string // AZP_AGENT_DIR
	Version  string // AZP_AGENT_VERSION; empty: an installed package, else the newest
	Platform string // AZP_AGENT_PLATFORM; empty: DetectPlatform
	CacheDir string // AZP_AGENT_CACHE; empty: no cache

	// UID and GID receive every extracted entry (and the agent directory itself) while it is
	// created. -1 keeps that id. Only effective when running as root; 0:0 (the zero value) is what
	// root creates anyway.
	UID, GID int

	HTTPClient *http.Client        // nil: proxy from the environment, no overall timeout
	Authorize  func(*http.Request) // optional: credentials for an authenticated mirror
	Logger     *slog.Logger        // nil: discard
	Progress   io.Writer           // non-nil (a terminal): draw a progress bar there

	// MaxBytes and MaxEntries cap what a package may expand to (total size of its files, number
	// of entries); 0: 4 GiB and 200,000. Exceeding either is ErrTooLarge, found before the excess
	// is written.
	MaxBytes   int64
	MaxEntries int

	Retries          int           // failures in a row before giving up; 0: 5
	RetryDelay       time.Duration // first backoff, doubling up to 10 s; 0: 1 s
	StallTimeout     time.Duration // no data for this long is a dropped connection; 0: 60 s
	ProgressInterval time.Duration // between progress log records; 0: 5 s
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o *Options) httpClient() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{Transport: t}
}

func (o *Options) retries() int { return orDefault(o.Retries, 5) }
func (o *Options) limits() limits {
	return limits{bytes: orDefault(o.MaxBytes, defaultMaxBytes), entries: orDefault(o.MaxEntries, defaultMaxEntries)}
}
func (o *Options) retryDelay() time.Duration { return orDefault(o.RetryDelay, time.Second) }
func (o *Options) stallTimeout() time.Duration {
	return orDefault(o.StallTimeout, 60*time.Second)
}
func (o *Options) progressInterval() time.Duration {
	return orDefault(o.ProgressInterval, 5*time.Second)
}

func orDefault[T int | int64 | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

// publicBase is a variable only so that tests never reach the internet.
var publicBase = "https://download.agent.dev.azure.com/agent/"

// PublicURL is Microsoft's public download location of a package (no credentials needed).
func PublicURL(version, platform string) string {
	return publicBase + version + "/vsts-agent-" + platform + "-" + version + ".tar.gz"
}

// ErrHashMismatch: the downloaded bytes do not have the expected SHA-256.
var ErrHashMismatch = errors.New("SHA-256 mismatch")

// errCacheCorrupt: a cache entry failed its hash check and must be replaced.
var errCacheCorrupt = errors.New("cached agent package is corrupt")

func (o *Options) platform() (p string, explicit bool, err error) {
	if o.Platform != "" {
		if !ValidPlatform(o.Platform) {
			return "", true, exit.Config(fmt.Errorf("AZP_AGENT_PLATFORM %q is not a supported platform (use one of %s)", o.Platform, strings.Join(Platforms, ", ")))
		}
		return o.Platform, true, nil
	}
	p, err = DetectPlatform()
	if err != nil {
		return "", false, exit.Config(err)
	}
	return p, false, nil
}

func (o *Options) check() error {
	if o.Dir == "" {
		return exit.Config(errors.New("AZP_AGENT_DIR is empty: set the directory for the agent package"))
	}
	if o.Version != "" && !validVersion(o.Version) {
		return exit.Config(fmt.Errorf("AZP_AGENT_VERSION %q is not a version such as 4.261.0", o.Version))
	}
	return nil
}

// Ensure makes sure a package that fits Options is installed in o.Dir and returns its marker. An
// installed package that fits the pin (any installed package when there is none) is used as it is,
// without touching the network. Otherwise it chooses a package through l (the newest, or the
// pinned version), takes it from the cache or downloads it, verifies it and installs it.
func Ensure(ctx context.Context, o Options, l Lister) (Marker, error) {
	log := o.logger()
	if err := o.check(); err != nil {
		return Marker{}, err
	}
	platform, explicit, err := o.platform()
	if err != nil {
		return Marker{}, err
	}
	m, err := Find(o.Dir)
	var incomplete *IncompleteError
	switch {
	case err == nil:
		how := "installed"
		if m.Baked {
			how = "baked (no " + MarkerFile + "; version from bin/" + DepsFile + ")"
		}
		switch {
		case explicit && m.Platform != "" && m.Platform != platform:
			log.Info("agent package in AZP_AGENT_DIR is for another platform, replacing it", "dir", o.Dir, "installed", m.Platform, "platform", platform, "package", how)
		case o.Version != "" && Compare(m.Current, o.Version) != 0:
			log.Info("agent package in AZP_AGENT_DIR is not the pinned version, replacing it", "dir", o.Dir, "installed", m.Current, "version", o.Version, "package", how)
		default:
			if m.Platform != "" && m.Platform != platform {
				// Detection can be fooled (gcompat on Alpine, say); whoever baked the image chose.
				log.Warn("agent package in AZP_AGENT_DIR is for another platform than detected; using it", "dir", o.Dir, "installed", m.Platform, "detected", platform)
			}
			log.Info("agent package already installed", "dir", o.Dir, "version", m.Current, "platform", m.Platform, "package", how)
			return m, nil
		}
	case errors.As(err, &incomplete):
		log.Warn("AZP_AGENT_DIR holds an incomplete agent package; installing a complete one over it", "dir", o.Dir, "missing", strings.Join(incomplete.Missing, ", "))
		if l == nil {
			return Marker{}, exit.Config(err)
		}
	case !errors.Is(err, ErrNoAgent):
		return Marker{}, exit.Config(fmt.Errorf("AZP_AGENT_DIR %s: %w", o.Dir, err))
	}
	if l == nil {
		return Marker{}, exit.Runtime(fmt.Errorf("no agent package in %s and no server to list packages from", o.Dir))
	}
	pkg, notFound, err := choose(ctx, log, l, platform, o.Version)
	if err != nil {
		return Marker{}, err
	}
	return o.deliver(ctx, pkg, notFound)
}

// choose picks the package to install. notFound turns a 404 from its URL into the right error.
// A pinned version is asked for by itself when the lister can (PackageGetter, the self-updater's
// route) and must come with its hash; a version the server does not publish is a configuration
// error: there is no unverified fallback.
func choose(ctx context.Context, log *slog.Logger, l Lister, platform, pin string) (Package, func(error) error, error) {
	notFound := func(err error) error { return exit.Runtime(err) }
	var pkg Package
	if g, ok := l.(PackageGetter); ok && pin != "" {
		p, err := g.Package(ctx, platform, pin)
		switch {
		case errors.Is(err, ErrNotPublished):
			return Package{}, nil, exit.Config(fmt.Errorf("AZP_AGENT_VERSION = %q: the server publishes no agent package of that version for %s (%w); pick a published version or leave AZP_AGENT_VERSION empty for the newest", pin, platform, err))
		case err != nil:
			return Package{}, nil, markRuntime(fmt.Errorf("look up agent package %s for %s: %w", pin, platform, err))
		case p.Version != "" && Compare(p.Version, pin) != 0:
			return Package{}, nil, exit.Runtime(fmt.Errorf("asked the server for agent package %s (%s) and got %s", pin, platform, p.Version))
		}
		pkg = p
		pkg.Version = pin
	} else {
		top := 1
		if pin != "" {
			top = 0
		}
		list, err := l.Packages(ctx, platform, top)
		if err != nil {
			return Package{}, nil, markRuntime(fmt.Errorf("list agent packages for %s: %w", platform, err))
		}
		var best *Package
		for i := range list {
			p := &list[i]
			if p.Platform != "" && p.Platform != platform || !validVersion(p.Version) {
				continue
			}
			if pin != "" && Compare(p.Version, pin) != 0 {
				continue
			}
			// $top=1 is a request, not a promise: pick the highest ourselves.
			if best == nil || Compare(p.Version, best.Version) > 0 {
				best = p
			}
		}
		switch {
		case best != nil:
			pkg = *best
		case pin == "":
			return Package{}, nil, exit.Runtime(fmt.Errorf("the server lists no agent package for platform %s (bake one into AZP_AGENT_DIR, or check AZP_AGENT_PLATFORM)", platform))
		default:
			return Package{}, nil, exit.Config(fmt.Errorf("AZP_AGENT_VERSION = %q: the server lists no agent package of that version for %s; pick a listed version or leave AZP_AGENT_VERSION empty for the newest", pin, platform))
		}
	}
	if pin != "" && normHash(pkg.SHA256) == "" {
		return Package{}, nil, exit.Runtime(fmt.Errorf("the server gave agent package %s (%s) without a hashValue; refusing to install a pinned package that cannot be verified", pin, platform))
	}
	pkg.Platform = platform
	if pkg.URL == "" {
		pkg.URL = PublicURL(pkg.Version, platform)
	}
	if u, ok := currentCDN(pkg.URL); ok {
		log.Info("agent package URL names the retired CDN; using its successor", "from", redact.URL(pkg.URL), "to", redact.URL(u))
		pkg.URL = u
	}
	return pkg, notFound, nil
}

// Install is the backend of `azp-entrypoint install`: it installs o.Version from url (empty:
// PublicURL), verifying sha256 when given. It needs no token. An installed package of the same
// version, platform (and hash, when given) is kept.
func Install(ctx context.Context, o Options, url, sha256 string) (Marker, error) {
	log := o.logger()
	if o.Version == "" {
		return Marker{}, exit.Config(errors.New("install: --version is required (for example --version 4.261.0)"))
	}
	if err := o.check(); err != nil {
		return Marker{}, err
	}
	platform, _, err := o.platform()
	if err != nil {
		return Marker{}, err
	}
	want := normHash(sha256)
	if want != "" && (len(want) != 64 || strings.Trim(want, "0123456789abcdef") != "") {
		return Marker{}, exit.Config(fmt.Errorf("install: --sha256 %q is not a SHA-256 in hex", sha256))
	}
	if m, ok := Installed(o.Dir); ok && m.Version == o.Version && m.Platform == platform && (want == "" || want == m.SHA256) {
		log.Info("agent package already installed", "dir", o.Dir, "version", m.Version, "platform", m.Platform)
		return m, nil
	}
	if url == "" {
		url = PublicURL(o.Version, platform)
	}
	if want == "" {
		log.Warn("no --sha256 given: the package's integrity is not verified", "version", o.Version, "url", redact.URL(url))
	}
	pkg := Package{Version: o.Version, Platform: platform, URL: url, SHA256: want}
	return o.deliver(ctx, pkg, func(err error) error {
		return exit.Config(fmt.Errorf("%w (check --version, --platform and --url)", err))
	})
}

// deliver installs pkg into o.Dir: extract into a temporary directory next to the target (same
// file system), then move the entries into place and write the marker last.
func (o *Options) deliver(ctx context.Context, pkg Package, notFound func(error) error) (Marker, error) {
	log := o.logger()
	start := time.Now()
	own := newOwner(o.UID, o.GID)
	fail := func(err error) (Marker, error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return Marker{}, exit.Runtime(fmt.Errorf("install agent package %s: %w", pkg.Version, err))
		}
		err = fmt.Errorf("agent package %s (%s) from %s: %w", pkg.Version, pkg.Platform, redact.URL(pkg.URL), err)
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w (free space where AZP_AGENT_DIR %s or AZP_AGENT_CACHE is)", err, o.Dir)
		}
		var se *HTTPStatusError
		if errors.As(err, &se) {
			switch {
			case se.Status == http.StatusNotFound:
				return Marker{}, notFound(err)
			case se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden:
				return Marker{}, exit.Auth(fmt.Errorf("%w (check the credentials for the download location)", err))
			}
		}
		return Marker{}, markRuntime(err)
	}
	if err := prepareDir(o.Dir, own); err != nil {
		return fail(err)
	}
	tmp, err := os.MkdirTemp(o.Dir, ".pkg-"+pkg.Version+".tmp-")
	if err != nil {
		return fail(dirError(o.Dir, err))
	}
	defer os.RemoveAll(tmp)
	newRoot := filepath.Join(tmp, "new")

	var sum string
	if o.CacheDir != "" {
		sum, err = o.viaCache(ctx, pkg, newRoot, own)
	} else {
		sum, _, err = o.download(ctx, pkg, newRoot, own, nil)
	}
	if err != nil {
		return fail(err)
	}
	m := Marker{Version: pkg.Version, Platform: pkg.Platform, SHA256: sum, InstalledAt: time.Now().UTC()}
	if err := commit(o.Dir, tmp, newRoot, m, own); err != nil {
		return fail(err)
	}
	m.Current = m.Version
	log.Info("agent package installed", "dir", o.Dir, "version", m.Version, "platform", m.Platform,
		"sha256", m.SHA256, "seconds", time.Since(start).Seconds())
	return m, nil
}

// markRuntime keeps a kind chosen further down (auth, config) and marks anything else runtime.
func markRuntime(err error) error {
	if errors.Is(err, exit.ErrConfig) || errors.Is(err, exit.ErrAuth) || errors.Is(err, exit.ErrRuntime) {
		return err
	}
	return exit.Runtime(err)
}

func dirError(dir string, err error) error {
	switch {
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("agent directory %s is on a read-only file system (AZP_AGENT_DIR must be writable to install a package, or bake the package into the image): %w", dir, err)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("no space left for the agent package in %s: %w", dir, err)
	}
	return fmt.Errorf("agent directory %s (AZP_AGENT_DIR): %w", dir, err)
}

// prepareDir creates the agent directory, gives it (not its contents) to the agent's user, who
// writes its configuration and self-updates there, and removes leftovers of interrupted installs.
func prepareDir(dir string, own owner) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return dirError(dir, err)
	}
	if err := own.lchown(dir); err != nil {
		return dirError(dir, err)
	}
	for _, pat := range []string{".pkg-*.tmp-*", MarkerFile + ".tmp-*"} {
		old, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, p := range old {
			os.RemoveAll(p)
		}
	}
	return nil
}

// commit moves the extracted entries into dir. The old marker goes first, so that a crash in
// between leaves no marker (an incomplete package is never taken for a complete one); entries of
// an older package are moved aside into tmp (removed by the caller); the new marker comes last.
func commit(dir, tmp, newRoot string, m Marker, own owner) error {
	entries, err := os.ReadDir(newRoot)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return fmt.Errorf("%w: the archive is empty", ErrUnsafePackage)
	}
	for _, e := range entries {
		if n := e.Name(); n == MarkerFile || strings.HasPrefix(n, MarkerFile+".tmp-") || strings.HasPrefix(n, ".pkg-") {
			return fmt.Errorf("%w: top-level entry %q is reserved for the installer", ErrUnsafePackage, n)
		}
	}
	if err := os.Remove(filepath.Join(dir, MarkerFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return dirError(dir, err)
	}
	old := filepath.Join(tmp, "old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return dirError(dir, err)
	}
	for _, e := range entries {
		dst := filepath.Join(dir, e.Name())
		if _, err := os.Lstat(dst); err == nil {
			if err := os.Rename(dst, filepath.Join(old, e.Name())); err != nil {
				return fmt.Errorf("move old %s aside: %w", dst, err)
			}
		}
		if err := os.Rename(filepath.Join(newRoot, e.Name()), dst); err != nil {
			return fmt.Errorf("move %s into place: %w", dst, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return dirError(dir, err)
	}
	return writeMarker(dir, m, own)
}

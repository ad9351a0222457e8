package agentpkg

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// CheckDir validates AZP_AGENT_DIR without the network, so that a bad directory is reported before
// any download: it must be a directory (or be creatable), and, unless it already holds a package
// that fits o (Find; the pin and an explicit platform), it must be writable for the install.
// ok reports that such a package is there (m describes it). Errors name AZP_AGENT_DIR and the path
// and are configuration errors.
func CheckDir(o Options) (m Marker, ok bool, err error) {
	if err := o.check(); err != nil {
		return Marker{}, false, err
	}
	fi, err := os.Stat(o.Dir)
	switch {
	case err == nil && !fi.IsDir():
		return Marker{}, false, exit.Config(fmt.Errorf("AZP_AGENT_DIR %s is a file, not a directory: point AZP_AGENT_DIR at the directory that holds (or will hold) the extracted agent package", o.Dir))
	case errors.Is(err, syscall.ENOTDIR):
		return Marker{}, false, exit.Config(fmt.Errorf("AZP_AGENT_DIR %s: a parent of it is a file, not a directory", o.Dir))
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return Marker{}, false, exit.Config(fmt.Errorf("AZP_AGENT_DIR %s: %w", o.Dir, err))
	}
	if err == nil {
		m, ferr := Find(o.Dir)
		if ferr == nil && (o.Version == "" || Compare(m.Current, o.Version) == 0) && (o.Platform == "" || m.Platform == "" || m.Platform == o.Platform) {
			return m, true, nil
		}
	}
	// A package must be installed: the directory (or the ancestor it will be created in) must
	// take files.
	at := o.Dir
	for {
		if _, err := os.Stat(at); err == nil {
			break
		}
		parent := filepath.Dir(at)
		if parent == at {
			break
		}
		at = parent
	}
	f, err := os.CreateTemp(at, ".azp-probe-*")
	if err != nil {
		why := fmt.Sprintf("cannot be written by uid %d", os.Geteuid())
		if errors.Is(err, syscall.EROFS) {
			why = "is on a read-only file system"
		}
		what := "an agent package must be installed there"
		if o.Version != "" {
			what = "agent " + o.Version + " (AZP_AGENT_VERSION) must be installed there"
		}
		return Marker{}, false, exit.Config(fmt.Errorf("AZP_AGENT_DIR %s: %s %s, but %s: %w (bake the package into the image with `tar -xz` or `azp-entrypoint install`, or make the directory writable)", o.Dir, at, why, what, err))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return Marker{}, false, nil
}

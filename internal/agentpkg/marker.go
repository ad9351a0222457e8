package agentpkg

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MarkerFile is the name, inside the agent directory, of the file that says a complete package is
// installed there. It is written last and removed first.
const MarkerFile = ".azp-package.json"

// Marker records what was installed.
type Marker struct {
	Version     string    `json:"version"`
	Platform    string    `json:"platform"`
	SHA256      string    `json:"sha256"` // of the .tar.gz, as computed while extracting
	InstalledAt time.Time `json:"installedAt"`
	// Current is the version the agent runs now: the marker's version, or, after the agent's
	// self-update replaced bin by a symlink bin -> bin.<version>, that version. Not stored.
	Current string `json:"-"`
	// Baked: no marker, the tree was put there by other means (for example `tar -xz` in a
	// Dockerfile) and recognised by its own files (ReadTree). Not stored.
	Baked bool `json:"-"`
}

// Installed reads the marker in dir. It is the cheap "already installed" check: one small file
// read and one readlink, no walk of the tree, no network. ok is false when there is no valid
// marker, which includes a half-written package.
func Installed(dir string) (m Marker, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if err != nil {
		return Marker{}, false
	}
	if err := json.Unmarshal(b, &m); err != nil || !validVersion(m.Version) || m.Platform == "" {
		return Marker{}, false
	}
	m.Current = m.Version
	// The self-updater (update.sh.template) links bin -> bin.<new version>.
	if t, err := os.Readlink(filepath.Join(dir, "bin")); err == nil {
		if v, found := strings.CutPrefix(filepath.Base(t), "bin."); found && validVersion(v) {
			m.Current = v
		}
	}
	return m, true
}

// writeMarker publishes the marker atomically (temporary file, fsync, rename, fsync of the
// directory), so that a crash never leaves a marker that points at entries not yet renamed.
func writeMarker(dir string, m Marker, own owner) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, MarkerFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("write package marker in %s: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err = f.Write(append(b, '\n')); err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = own.fchown(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, MarkerFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write package marker %s: %w", filepath.Join(dir, MarkerFile), err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

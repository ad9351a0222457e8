package agentpkg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// An agent tree need not have been installed by this package: most custom images bake the agent
// with `curl … | tar -xz` (often as root, read-only for the agent's user) and have no marker. Such
// a tree is recognised by the package's own files, without running anything:
//
//   - bin/Agent.Listener and bin/Agent.Worker, the executables;
//   - bin/Agent.Listener.deps.json, where the build stamps the version and the runtime identifier:
//     src/dir.proj (target Build) publishes every project with Version=$(AgentVersion) and
//     RuntimeIdentifier=$(PackageRuntime), so the manifest lists the project as
//     "Agent.Listener/<version>" (type "project") and its "runtimeTarget.name" ends in "/<rid>";
//   - bin/en-US/strings.json, which StringUtil.EnsureLoaded (src/Agent.Sdk/Util/StringUtil.cs)
//     loads before any other culture: without it every message is "notFound:<key>";
//   - externals/, where the package keeps node and git.
//
// bin may be a symlink to bin.<version> after a self-update (update.sh.template); it is followed
// (read only).

// DepsFile is the listener's .NET dependency manifest in bin/.
const DepsFile = "Agent.Listener.deps.json"

// treeEntries are what a complete package has, in the order they are reported missing.
var treeEntries = []struct {
	path string
	dir  bool
	exec bool
}{
	{path: "bin/Agent.Listener", exec: true},
	{path: "bin/Agent.Worker", exec: true},
	{path: "bin/" + DepsFile},
	{path: "bin/en-US/strings.json"},
	{path: "externals", dir: true},
}

// IncompleteError is an agent directory that holds part of an agent package.
type IncompleteError struct {
	Dir     string
	Missing []string // root-relative entries, each with why ("bin/Agent.Worker (missing)")
}

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("AZP_AGENT_DIR %s holds an incomplete agent package: %s (extract the whole vsts-agent-<platform>-<version>.tar.gz there, or leave the directory empty so that the entrypoint installs one)",
		e.Dir, strings.Join(e.Missing, ", "))
}

// ErrNoAgent: the directory holds no bin/Agent.Listener at all.
var ErrNoAgent = errors.New("no agent package")

// ReadTree reports the agent package in dir from its own files: version and platform from
// bin/Agent.Listener.deps.json. It returns ErrNoAgent (wrapped) when there is no bin/Agent.Listener,
// and an *IncompleteError naming every missing or unusable entry when the tree is partial.
func ReadTree(dir string) (Marker, error) {
	if _, err := os.Stat(filepath.Join(dir, "bin", "Agent.Listener")); errors.Is(err, os.ErrNotExist) {
		return Marker{}, fmt.Errorf("%s: %w", dir, ErrNoAgent)
	}
	var missing []string
	for _, e := range treeEntries {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(e.path)))
		switch {
		case errors.Is(err, os.ErrNotExist):
			missing = append(missing, e.path+" (missing)")
		case err != nil:
			missing = append(missing, fmt.Sprintf("%s (%v)", e.path, errors.Unwrap(err)))
		case e.dir && !fi.IsDir():
			missing = append(missing, e.path+" (not a directory)")
		case !e.dir && !fi.Mode().IsRegular():
			missing = append(missing, e.path+" (not a regular file)")
		case e.exec && fi.Mode().Perm()&0o111 == 0:
			missing = append(missing, e.path+" (not executable)")
		}
	}
	m := Marker{}
	if v, p, err := readDeps(filepath.Join(dir, "bin", DepsFile)); err == nil {
		m.Version, m.Platform, m.Current = v, p, v
	} else if !errors.Is(err, os.ErrNotExist) {
		missing = append(missing, fmt.Sprintf("bin/%s (%v)", DepsFile, err))
	}
	if len(missing) > 0 {
		return Marker{}, &IncompleteError{Dir: dir, Missing: missing}
	}
	return m, nil
}

// readDeps reads the version and runtime identifier stamped into a .deps.json manifest.
func readDeps(path string) (version, platform string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return "", "", err
	}
	var doc struct {
		RuntimeTarget struct {
			Name string `json:"name"`
		} `json:"runtimeTarget"`
		Libraries map[string]struct {
			Type string `json:"type"`
		} `json:"libraries"`
	}
	if err := json.Unmarshal(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), &doc); err != nil {
		return "", "", fmt.Errorf("not a .NET dependency manifest: %w", err)
	}
	for k, l := range doc.Libraries {
		if name, v, ok := strings.Cut(k, "/"); ok && name == "Agent.Listener" && strings.EqualFold(l.Type, "project") {
			version = v
		}
	}
	if !validVersion(version) {
		return "", "", errors.New("names no Agent.Listener project version")
	}
	if _, rid, ok := strings.Cut(doc.RuntimeTarget.Name, "/"); ok && ValidPlatform(rid) {
		platform = rid
	}
	return version, platform, nil
}

// Find reports the agent package installed in dir: the marker of an install by this package
// (Marker.Baked false), else a complete tree baked by other means (Marker.Baked true, read by
// ReadTree). Errors as ReadTree's.
func Find(dir string) (Marker, error) {
	if m, ok := Installed(dir); ok {
		return m, nil
	}
	m, err := ReadTree(dir)
	if err != nil {
		return Marker{}, err
	}
	m.Baked = true
	return m, nil
}

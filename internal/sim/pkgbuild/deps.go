package pkgbuild

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The real package carries no version file of its own: the build publishes every project with
// Version=$(AgentVersion) and RuntimeIdentifier=$(PackageRuntime) (src/dir.proj, target Build), so
// the version and the runtime identifier are stamped into the .NET host's dependency manifests
// bin/Agent.Listener.deps.json and bin/Agent.Worker.deps.json: "runtimeTarget.name" is
// ".NETCoreApp,Version=v8.0/<rid>" and the project itself is listed as "Agent.Listener/<version>"
// (type "project") under "targets" and "libraries". The listener reports the same version from
// BuildConstants.AgentPackage.Version, which dir.proj's GenerateConstant writes at build time.
// The fake agent reads its version back from the manifest next to its executable.

// DepsFile is the dependency manifest of the listener in bin/.
const DepsFile = "Agent.Listener.deps.json"

// VersionInfo is what a package's manifests say about it.
type VersionInfo struct {
	Version  string
	Platform string // the runtime identifier, e.g. linux-x64
}

// tfm is the target framework of the package (Common.props: net8.0 unless NetTargetFramework).
const tfm = ".NETCoreApp,Version=v8.0"

// depsJSON renders <project>.deps.json as `dotnet publish` writes it, reduced to the project
// entries of the agent (no NuGet packages).
func depsJSON(project string, v VersionInfo) []byte {
	self := project + "/" + v.Version
	deps := map[string]string{"Agent.Sdk": v.Version, "Microsoft.VisualStudio.Services.Agent": v.Version}
	target := map[string]any{
		self: map[string]any{
			"dependencies": deps,
			"runtime":      map[string]any{project + ".dll": map[string]any{}},
		},
		"Agent.Sdk/" + v.Version:                             map[string]any{"runtime": map[string]any{"Agent.Sdk.dll": map[string]any{}}},
		"Microsoft.VisualStudio.Services.Agent/" + v.Version: map[string]any{"runtime": map[string]any{"Microsoft.VisualStudio.Services.Agent.dll": map[string]any{}}},
	}
	lib := func() map[string]any { return map[string]any{"type": "project", "serviceable": false, "sha512": ""} }
	doc := map[string]any{
		"runtimeTarget":      map[string]any{"name": tfm + "/" + v.Platform, "signature": ""},
		"compilationOptions": map[string]any{},
		"targets":            map[string]any{tfm: map[string]any{}, tfm + "/" + v.Platform: target},
		"libraries": map[string]any{
			self:                     lib(),
			"Agent.Sdk/" + v.Version: lib(),
			"Microsoft.VisualStudio.Services.Agent/" + v.Version: lib(),
		},
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n')
}

// ReadVersionInfo reads the version and runtime identifier stamped into binDir/Agent.Listener.deps.json.
func ReadVersionInfo(binDir string) (VersionInfo, error) {
	var v VersionInfo
	b, err := os.ReadFile(filepath.Join(binDir, DepsFile))
	if err != nil {
		return v, err
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
		return v, fmt.Errorf("%s: %w", DepsFile, err)
	}
	if _, rid, ok := strings.Cut(doc.RuntimeTarget.Name, "/"); ok {
		v.Platform = rid
	}
	for k, l := range doc.Libraries {
		if name, ver, ok := strings.Cut(k, "/"); ok && name == "Agent.Listener" && l.Type == "project" {
			v.Version = ver
		}
	}
	if v.Version == "" {
		return v, errors.New(DepsFile + " names no Agent.Listener project")
	}
	return v, nil
}

// WriteVersionInfo stamps binDir's manifests with v (used by the fake self-update, which copies its
// own bin directory instead of downloading the new package).
func WriteVersionInfo(binDir string, v VersionInfo) error {
	for _, p := range []string{"Agent.Listener", "Agent.Worker"} {
		if err := os.WriteFile(filepath.Join(binDir, p+".deps.json"), depsJSON(p, v), 0o644); err != nil {
			return err
		}
	}
	return nil
}

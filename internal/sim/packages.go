package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// AddPackage registers an agent package: it appears in the package listing and its file is
// served at /_sim/download/<Filename>.
func (s *Server) AddPackage(p PackageSpec) error {
	maj, mnr, pat, err := parseVersion(p.Version)
	if err != nil {
		return fmt.Errorf("sim: package version %q: %w", p.Version, err)
	}
	if p.Platform == "" {
		return fmt.Errorf("sim: package %s: platform is required (e.g. linux-x64)", p.Version)
	}
	if p.Type == "" {
		p.Type = "agent"
	}
	if p.FilePath != "" {
		if _, err := os.Stat(p.FilePath); err != nil {
			return fmt.Errorf("sim: package %s file: %w", p.Version, err)
		}
		if p.Filename == "" {
			p.Filename = filepath.Base(p.FilePath)
		}
		if p.SHA256 == "" {
			sum, err := fileSHA256(p.FilePath)
			if err != nil {
				return fmt.Errorf("sim: hash package %s: %w", p.FilePath, err)
			}
			p.SHA256 = sum
		}
	} else if p.DownloadURL == "" {
		return fmt.Errorf("sim: package %s: FilePath or DownloadURL is required", p.Version)
	}
	if p.Filename == "" {
		p.Filename = fmt.Sprintf("vsts-agent-%s-%s.tar.gz", p.Platform, p.Version)
	}
	if strings.ContainsAny(p.Filename, "/\\") {
		return fmt.Errorf("sim: package filename %q must not contain a path separator", p.Filename)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.CreatedOn.IsZero() {
		p.CreatedOn = s.now()
	}
	if p.FilePath != "" {
		s.downloads[p.Filename] = p.FilePath
	}
	// Re-registering the same type/platform/version replaces the entry.
	for i, x := range s.packages {
		if strings.EqualFold(x.spec.Type, p.Type) && strings.EqualFold(x.spec.Platform, p.Platform) &&
			x.major == maj && x.minor == mnr && x.patch == pat {
			s.packages = append(s.packages[:i:i], s.packages[i+1:]...)
			break
		}
	}
	s.packages = append(s.packages, &pkg{spec: p, major: maj, minor: mnr, patch: pat})
	return nil
}

func parseVersion(v string) (int, int, int, error) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return 0, 0, 0, fmt.Errorf("want major.minor.patch")
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 {
			return 0, 0, 0, fmt.Errorf("want major.minor.patch")
		}
		n[i] = x
	}
	return n[0], n[1], n[2], nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
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

// handlePackages answers packages/{type}[/{platform}] (platform also as ?platform=) with a
// collection, newest first, and packages/{type}/{platform}/{version} with the one package as a
// single object, or 404 when that version is not published: the real updater's pinned lookup
// (AgentServer.GetPackageAsync -> TaskAgentHttpClient.GetPackageAsync in microsoft/azure-pipelines-agent).
func (s *Server) handlePackages(w http.ResponseWriter, r *http.Request, rest []string) {
	q := r.URL.Query()
	var ptype, platform, version string
	if len(rest) > 0 {
		ptype = rest[0]
	}
	if len(rest) > 1 {
		platform = rest[1]
	}
	if len(rest) > 2 {
		version = rest[2]
	}
	if len(rest) > 3 {
		notFound(w, r)
		return
	}
	if platform == "" {
		platform = q.Get("platform")
	}
	top := 0
	for _, k := range []string{"$top", "top"} {
		if v := q.Get(k); v != "" {
			top, _ = strconv.Atoi(v)
			break
		}
	}
	s.mu.Lock()
	var sel []*pkg
	for _, p := range s.packages {
		if ptype != "" && !strings.EqualFold(p.spec.Type, ptype) {
			continue
		}
		if platform != "" && !strings.EqualFold(p.spec.Platform, platform) {
			continue
		}
		if version != "" && p.spec.Version != version {
			continue
		}
		sel = append(sel, p)
	}
	s.mu.Unlock()
	sort.SliceStable(sel, func(i, j int) bool {
		a, b := sel[i], sel[j]
		if a.major != b.major {
			return a.major > b.major
		}
		if a.minor != b.minor {
			return a.minor > b.minor
		}
		return a.patch > b.patch
	})
	if top > 0 && len(sel) > top {
		sel = sel[:top]
	}
	out := make([]taskagent.PackageMetadata, 0, len(sel))
	for _, p := range sel {
		url := p.spec.DownloadURL
		if url == "" {
			url = s.scheme() + "://" + r.Host + "/_sim/download/" + p.spec.Filename
		}
		out = append(out, taskagent.PackageMetadata{
			Type:        ptr(p.spec.Type),
			Platform:    ptr(p.spec.Platform),
			CreatedOn:   tm(p.spec.CreatedOn),
			Version:     &taskagent.PackageVersion{Major: ptr(p.major), Minor: ptr(p.minor), Patch: ptr(p.patch)},
			DownloadUrl: ptr(url),
			HashValue:   ptr(p.spec.SHA256),
			InfoUrl:     ptr("https://go.microsoft.com/fwlink/?LinkId=798199"),
			Filename:    ptr(p.spec.Filename),
		})
	}
	if version != "" {
		if len(out) == 0 {
			writeError(w, http.StatusNotFound, "PackageNotFoundException", fmt.Sprintf("Package %s for platform %s with version %s was not found.", ptype, platform, version))
			return
		}
		writeJSON(w, http.StatusOK, out[0])
		return
	}
	writeCollection(w, out)
}

// handleDownload serves a registered package file like the CDN: no auth, Range supported.
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request, filename string) {
	s.mu.Lock()
	path, ok := s.downloads[filename]
	s.mu.Unlock()
	if !ok {
		http.Error(w, "BlobNotFound", http.StatusNotFound)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, "package file unavailable: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, "package file unavailable: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, filename, st.ModTime(), f)
}

package agentpkg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

func TestEnsureUsesInstalledPackageWithoutNetwork(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("p.tar.gz", pkg)
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.261.0"
	if _, err := Install(context.Background(), o, url, sha(pkg)); err != nil {
		t.Fatal(err)
	}
	s.set(func(s *server) { s.noHit = true })
	for _, pin := range []string{"", "4.261.0", "4.261"} {
		o.Version = pin
		// failLister and noHit fail the test on any network use; the reuse time is measured in bench/.
		m, err := Ensure(context.Background(), o, failLister{t})
		if err != nil {
			t.Fatal(err)
		}
		if m.Version != "4.261.0" {
			t.Errorf("pin %q: %+v", pin, m)
		}
	}
	// Detected platform (no AZP_AGENT_PLATFORM): a baked package for another platform is used.
	o.Version, o.Platform = "", ""
	if _, err := Ensure(context.Background(), o, failLister{t}); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureLatestPicksHighestOfList(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	url := s.add("vsts-agent-linux-x64-4.261.0.tar.gz", pkg)
	l := &fakeLister{pkgs: []Package{
		{Version: "4.9.0", Platform: "linux-x64", URL: s.srv.URL + "/old", SHA256: "00"},
		{Version: "4.261.0", Platform: "linux-x64", URL: url, SHA256: sha(pkg)},
		{Version: "4.300.0", Platform: "linux-arm64", URL: s.srv.URL + "/arm"},
		{Version: "4.10.0", URL: s.srv.URL + "/old2"},
	}}
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	m, err := Ensure(context.Background(), o, l)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "4.261.0" {
		t.Errorf("installed %s", m.Version)
	}
	if !slices.Equal(l.calls, []int{1}) {
		t.Errorf("lister asked with top %v, want [1]", l.calls)
	}
	assertInstalled(t, dir, "4.261.0")
}

func TestEnsurePinnedVersion(t *testing.T) {
	s := newServer(t)
	p250 := buildTarGz(t, agentEntries("4.250.0"))
	p261 := buildTarGz(t, agentEntries("4.261.0"))
	l := &fakeLister{pkgs: []Package{
		{Version: "4.261.0", URL: s.add("261.tar.gz", p261), SHA256: sha(p261)},
		{Version: "4.250.0", URL: s.add("250.tar.gz", p250), SHA256: sha(p250)},
	}}
	dir := t.TempDir()
	o, rec := testOptions(t, dir)
	o.Version = "4.250.0"
	if _, err := Ensure(context.Background(), o, l); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, dir, "4.250.0")
	if !slices.Equal(l.calls, []int{0}) {
		t.Errorf("lister asked with top %v, want [0] (all versions)", l.calls)
	}
	// A different pin replaces the installed package.
	o.Version = "4.261.0"
	if _, err := Ensure(context.Background(), o, l); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, dir, "4.261.0")
	if len(rec.find("agent package in AZP_AGENT_DIR is not the pinned version, replacing it")) != 1 {
		t.Error("replacement not logged")
	}
}

func TestEnsurePinNotOnServerIsConfigError(t *testing.T) {
	s := newServer(t)
	old := publicBase
	publicBase = s.srv.URL + "/agent/"
	t.Cleanup(func() { publicBase = old })
	// Even at the public location the unlisted pin is not fetched: no unverified fallback.
	s.add("agent/4.1.2/vsts-agent-linux-x64-4.1.2.tar.gz", buildTarGz(t, agentEntries("4.1.2")))
	l := &fakeLister{pkgs: []Package{{Version: "4.261.0", URL: s.srv.URL + "/x"}}}
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Version = "4.1.2"
	_, err := Ensure(context.Background(), o, l)
	assertCode(t, err, 2, "4.1.2", "AZP_AGENT_VERSION")
	assertNoPackage(t, dir)
	if s.hitCount() != 0 {
		t.Errorf("downloaded %d times from the public location without a hash", s.hitCount())
	}
}

func TestEnsureListedPackage404IsRuntimeError(t *testing.T) {
	s := newServer(t)
	l := &fakeLister{pkgs: []Package{{Version: "4.261.0", URL: s.srv.URL + "/gone.tar.gz"}}}
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	_, err := Ensure(context.Background(), o, l)
	assertCode(t, err, 1, "4.261.0", s.srv.URL+"/gone.tar.gz")
	assertNoPackage(t, dir)
}

func TestEnsureErrors(t *testing.T) {
	dir := t.TempDir()
	o, _ := testOptions(t, dir)
	o.Platform = "linux-arm" // a real RID, but not one the entrypoint supports
	_, err := Ensure(context.Background(), o, &fakeLister{})
	assertCode(t, err, 2, "AZP_AGENT_PLATFORM", "linux-arm")

	o.Platform = "linux-x64"
	_, err = Ensure(context.Background(), o, &fakeLister{})
	assertCode(t, err, 1, "no agent package for platform linux-x64")

	// The lister's own error kind (here: auth) is kept.
	_, err = Ensure(context.Background(), o, &fakeLister{err: exit.Auth(errors.New("401"))})
	assertCode(t, err, 3, "list agent packages", "401")

	_, err = Ensure(context.Background(), o, nil)
	assertCode(t, err, 1, dir)

	o.Dir = ""
	_, err = Ensure(context.Background(), o, &fakeLister{})
	assertCode(t, err, 2, "AZP_AGENT_DIR")
	assertNoPackage(t, dir)
}

func TestEnsureExplicitPlatformReplacesOtherPlatform(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	l := &fakeLister{pkgs: []Package{{Version: "4.261.0", URL: s.add("p.tar.gz", pkg), SHA256: sha(pkg)}}}
	dir := t.TempDir()
	writeMarker(dir, Marker{Version: "4.261.0", Platform: "linux-musl-x64"}, owner{})
	o, _ := testOptions(t, dir)
	if _, err := Ensure(context.Background(), o, l); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, dir, "4.261.0")
	if len(l.calls) != 1 {
		t.Error("package for another platform was kept")
	}
}

func TestEnsureWarnsAboutUnmarkedAgent(t *testing.T) {
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	l := &fakeLister{pkgs: []Package{{Version: "4.261.0", URL: s.add("p.tar.gz", pkg), SHA256: sha(pkg)}}}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin", "Agent.Listener"), []byte("half"), 0o755)
	o, rec := testOptions(t, dir)
	if _, err := Ensure(context.Background(), o, l); err != nil {
		t.Fatal(err)
	}
	assertInstalled(t, dir, "4.261.0")
	if len(rec.find("AZP_AGENT_DIR holds an incomplete agent package; installing a complete one over it")) != 1 {
		t.Error("no warning")
	}
}

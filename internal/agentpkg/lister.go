package agentpkg

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
)

// PackageGetter is a Lister that can also ask for one version by itself, as the real self-updater
// does (GET _apis/distributedtask/packages/agent/{platform}/{version}; AgentServer.GetPackageAsync in
// microsoft/azure-pipelines-agent). A version the server does not publish is ErrNotPublished.
type PackageGetter interface {
	Package(ctx context.Context, platform, version string) (Package, error)
}

// ErrNotPublished: the server does not publish the asked-for version.
var ErrNotPublished = errors.New("version not published")

// ServerLister lists and looks up packages through an Azure DevOps client; it implements Lister
// and PackageGetter.
func ServerLister(c *azdo.Client) Lister { return serverLister{c} }

type serverLister struct{ c *azdo.Client }

func (l serverLister) Packages(ctx context.Context, platform string, top int) ([]Package, error) {
	pkgs, err := l.c.Packages(ctx, platform, top)
	out := make([]Package, 0, len(pkgs))
	for _, p := range pkgs {
		out = append(out, Package{Version: p.Version, Platform: p.Platform, URL: p.URL, SHA256: p.SHA256, Filename: p.Filename})
	}
	return out, err
}

func (l serverLister) Package(ctx context.Context, platform, version string) (Package, error) {
	p, err := l.c.Package(ctx, platform, version)
	if errors.Is(err, azdo.ErrNotFound) {
		return Package{}, errors.Join(ErrNotPublished, err)
	}
	return Package{Version: p.Version, Platform: p.Platform, URL: p.URL, SHA256: p.SHA256, Filename: p.Filename}, err
}

// Packages published before agent 3.257.0 (May 2025) carry download URLs on the retired CDN host
// vstsagentpackage.azureedge.net; the same paths are served by download.agent.dev.azure.com, the
// host the agent's own package templates use today (src/Misc/InstallAgentPackage.template.xml,
// PlatformUtil._agentPackageUri in microsoft/azure-pipelines-agent).
const (
	retiredCDN     = "vstsagentpackage.azureedge.net"
	currentCDNHost = "download.agent.dev.azure.com"
)

// currentCDN rewrites a URL on the retired CDN host to the current one (ok false: unchanged).
func currentCDN(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Hostname(), retiredCDN) {
		return raw, false
	}
	u.Host = currentCDNHost
	if u.Scheme == "http" {
		u.Scheme = "https"
	}
	return u.String(), true
}

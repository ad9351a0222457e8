package azdo

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Package asks for one agent version the way the real self-updater does: GET
// _apis/distributedtask/packages/agent/{platform}/{version}, answered with a single PackageMetadata
// (AgentServer.GetPackageAsync -> TaskAgentHttpClient.GetPackageAsync in
// microsoft/azure-pipelines-agent). A version the server does not publish is ErrNotFound.
func (c *Client) Package(ctx context.Context, platform, version string) (Package, error) {
	sdk, err := c.area(ctx)
	if err != nil {
		return Package{}, c.explain(err, "look up agent package "+version+" for "+platform)
	}
	resp, err := sdk.Send(ctx, http.MethodGet, locPackages, "7.1-preview.1",
		map[string]string{"packageType": "agent", "platform": platform, "version": version}, nil, nil, "", "application/json", nil)
	if err != nil {
		return Package{}, c.explain(err, "look up agent package "+version+" for "+platform)
	}
	var p taskagent.PackageMetadata
	if err := sdk.UnmarshalBody(resp, &p); err != nil {
		return Package{}, c.explain(err, "read agent package "+version+" for "+platform)
	}
	out := Package{Platform: str(p.Platform), URL: str(p.DownloadUrl), SHA256: strings.ToLower(str(p.HashValue)), Filename: str(p.Filename)}
	if v := p.Version; v != nil && v.Major != nil && v.Minor != nil && v.Patch != nil {
		out.Version = fmt.Sprintf("%d.%d.%d", *v.Major, *v.Minor, *v.Patch)
	}
	return out, nil
}

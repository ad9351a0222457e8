package azdo

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Package is an agent package the server offers.
type Package struct {
	Version, Platform, URL, SHA256, Filename string
}

// Packages lists the agent packages for a platform (e.g. linux-x64), newest first.
func (c *Client) Packages(ctx context.Context, platform string, top int) ([]Package, error) {
	q := url.Values{}
	if top > 0 {
		q.Set("$top", strconv.Itoa(top))
	}
	var list []taskagent.PackageMetadata
	err := c.send(ctx, http.MethodGet, locPackages, map[string]string{"packageType": "agent", "platform": platform}, q, &list)
	if err != nil {
		return nil, c.explain(err, "list agent packages for "+platform)
	}
	out := make([]Package, 0, len(list))
	for _, p := range list {
		pk := Package{Platform: str(p.Platform), URL: str(p.DownloadUrl), SHA256: strings.ToLower(str(p.HashValue)), Filename: str(p.Filename)}
		if v := p.Version; v != nil && v.Major != nil && v.Minor != nil && v.Patch != nil {
			pk.Version = fmt.Sprintf("%d.%d.%d", *v.Major, *v.Minor, *v.Patch)
		}
		out = append(out, pk)
	}
	return out, nil
}

// JobRequests lists the job requests of an agent (agentId filter).
func (c *Client) JobRequests(ctx context.Context, poolID, agentID int) ([]JobRequest, error) {
	q := url.Values{}
	q.Set("agentId", strconv.Itoa(agentID))
	var list []taskagent.TaskAgentJobRequest
	if err := c.send(ctx, http.MethodGet, locJobRequests, map[string]string{"poolId": strconv.Itoa(poolID)}, q, &list); err != nil {
		return nil, c.explain(err, fmt.Sprintf("list job requests of agent %d", agentID))
	}
	out := make([]JobRequest, 0, len(list))
	for i := range list {
		out = append(out, *convRequest(&list[i]))
	}
	return out, nil
}

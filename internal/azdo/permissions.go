package azdo

import (
	"context"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/security"
)

// AgentPoolsNamespace is the DistributedTask "AgentPools" security namespace; its token for one
// pool is "AgentPools/{poolId}" and bit 2 is Manage (register, change and remove the pool's agents).
var AgentPoolsNamespace = uuid.MustParse("101eae8c-1709-47f9-b228-0e476c35b3ba")

// PermManage is the Manage bit of AgentPoolsNamespace.
const PermManage = 2

// MayManage asks the Security service whether the calling identity holds Manage on the pool
// (GET _apis/permissions/{namespace}/2?tokens=AgentPools/{poolId}), which changes nothing. It
// reports the identity's rights, not a PAT's scope, and a server may refuse the question; so a
// false answer or an error is a hint, never the authority: a registration the server refuses is.
// (A request on a made-up agent id is no probe: the server looks the agent up first and answers
// 404 whatever the caller's rights.)
func (c *Client) MayManage(ctx context.Context, poolID int) (bool, error) {
	c.mu.Lock()
	conn := &azuredevops.Connection{BaseUrl: c.url, SuppressFedAuthRedirect: true, UserAgent: "azp-entrypoint"}
	sc := &security.ClientImpl{Client: *azuredevops.NewClientWithOptions(conn, c.url, azuredevops.WithHTTPClient(c.http))}
	c.mu.Unlock()
	ns, bits, tok := AgentPoolsNamespace, PermManage, "AgentPools/"+strconv.Itoa(poolID)
	got, err := sc.HasPermissions(ctx, security.HasPermissionsArgs{SecurityNamespaceId: &ns, Permissions: &bits, Tokens: &tok})
	if err != nil {
		return false, c.explain(err, "ask the Security service for the Manage permission on pool "+strconv.Itoa(poolID))
	}
	if got == nil || len(*got) != 1 {
		return false, fmt.Errorf("the Security service answered %v for one token", got)
	}
	return (*got)[0], nil
}

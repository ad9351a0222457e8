package azdo

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Calls the scaler (internal/scale) needs: a pool's unfinished job requests with their demands,
// the organisation's parallel jobs, and registering its offline placeholder agent.

var locResourceUsage = uuid.MustParse("eae1d376-a8b1-4475-9041-1dfdbe8f0143")

// PoolRequest is an unfinished job request of a pool, with its demands.
type PoolRequest struct {
	JobRequest
	Demands []string
}

// Pending reports whether no agent has been assigned and no result exists.
func (r PoolRequest) Pending() bool { return r.AssignTime.IsZero() && r.Result == "" }

// UnfinishedRequests lists the pool's unfinished job requests (completedRequestCount=0 without
// $top: the service then returns every unfinished request, demands included, in one page).
func (c *Client) UnfinishedRequests(ctx context.Context, poolID int) ([]PoolRequest, error) {
	q := url.Values{}
	q.Set("completedRequestCount", "0")
	var list []taskagent.TaskAgentJobRequest
	if err := c.send(ctx, http.MethodGet, locJobRequests, map[string]string{"poolId": strconv.Itoa(poolID)}, q, &list); err != nil {
		return nil, c.explain(err, "list the pool's job requests")
	}
	out := make([]PoolRequest, 0, len(list))
	for i := range list {
		pr := PoolRequest{JobRequest: *convRequest(&list[i])}
		if list[i].Demands != nil {
			for _, d := range *list[i].Demands {
				if s, ok := d.(string); ok {
					pr.Demands = append(pr.Demands, s)
				} else {
					pr.Demands = append(pr.Demands, fmt.Sprint(d))
				}
			}
		}
		out = append(out, pr)
	}
	return out, nil
}

// ParallelJobs is the organisation's self-hosted (Private) parallel-job limit and use.
type ParallelJobs struct {
	Total, Used int
}

// ParallelJobs reads resourceusage?parallelismTag=Private&poolIsHosted=false.
func (c *Client) ParallelJobs(ctx context.Context) (ParallelJobs, error) {
	q := url.Values{}
	q.Set("parallelismTag", "Private")
	q.Set("poolIsHosted", "false")
	q.Set("includeRunningRequests", "true")
	var ru taskagent.ResourceUsage
	if err := c.sendOne(ctx, http.MethodGet, locResourceUsage, nil, q, &ru); err != nil {
		return ParallelJobs{}, c.explain(err, "read the organisation's parallel jobs")
	}
	var p ParallelJobs
	if ru.ResourceLimit != nil && ru.ResourceLimit.TotalCount != nil {
		p.Total = *ru.ResourceLimit.TotalCount
	}
	if ru.UsedCount != nil {
		p.Used = *ru.UsedCount
	}
	return p, nil
}

// AddOfflineAgent registers an agent that never connects (the scaler's placeholder): name,
// version and system capabilities as given, a fresh public key whose private half is discarded,
// so that no credential for it exists anywhere.
func (c *Client) AddOfflineAgent(ctx context.Context, poolID int, name, version string, caps map[string]string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	exp := big.NewInt(int64(key.E)).Bytes()
	mod := key.N.Bytes()
	one := 1
	state := "Provisioned"
	osd := "Linux (azp-entrypoint scale placeholder)"
	enabled := true
	ta, err := c.taskagent(ctx)
	if err == nil {
		_, err = ta.AddAgent(ctx, taskagent.AddAgentArgs{PoolId: &poolID, Agent: &taskagent.TaskAgent{
			Name: &name, Version: &version, OsDescription: &osd, MaxParallelism: &one, ProvisioningState: &state, Enabled: &enabled,
			SystemCapabilities: &caps,
			Authorization:      &taskagent.TaskAgentAuthorization{PublicKey: &taskagent.TaskAgentPublicKey{Exponent: &exp, Modulus: &mod}},
		}})
	}
	if err != nil {
		return c.explain(err, "register placeholder agent "+strconv.Quote(name))
	}
	return nil
}

// sendOne is send for a single (non-collection) JSON answer.
func (c *Client) sendOne(ctx context.Context, method string, loc uuid.UUID, route map[string]string, q url.Values, out any) error {
	sdk, err := c.area(ctx)
	if err != nil {
		return err
	}
	resp, err := sdk.Send(ctx, method, loc, "7.1-preview.1", route, q, nil, "", "application/json", nil)
	if err != nil {
		return err
	}
	return sdk.UnmarshalBody(resp, out)
}

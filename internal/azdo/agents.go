package azdo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// JobRequest is a job request of a pool.
type JobRequest struct {
	ID                                             uint64
	AgentID                                        int
	JobID, JobName, Result                         string
	QueueTime, AssignTime, ReceiveTime, FinishTime time.Time
}

// Agent is an agent of a pool.
type Agent struct {
	ID                         int
	Name, Status, Version      string
	Enabled                    bool
	StatusChangedOn, CreatedOn time.Time
	AssignedRequest            *JobRequest // with includeAssignedRequest; nil when idle
	// ClientID and PublicKeyModulus are the agent's authorization (its OAuth client and the public
	// half of the key its listener holds), where the server returns them; empty otherwise.
	ClientID         string
	PublicKeyModulus []byte
}

// Online reports whether the server sees the agent as connected.
func (a Agent) Online() bool { return strings.EqualFold(a.Status, "online") }

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func tm(t *azuredevops.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

func convRequest(r *taskagent.TaskAgentJobRequest) *JobRequest {
	if r == nil {
		return nil
	}
	j := &JobRequest{JobName: str(r.JobName), QueueTime: tm(r.QueueTime), AssignTime: tm(r.AssignTime),
		ReceiveTime: tm(r.ReceiveTime), FinishTime: tm(r.FinishTime)}
	if r.RequestId != nil {
		j.ID = *r.RequestId
	}
	if r.JobId != nil {
		j.JobID = r.JobId.String()
	}
	if r.Result != nil {
		j.Result = string(*r.Result)
	}
	if r.ReservedAgent != nil && r.ReservedAgent.Id != nil {
		j.AgentID = *r.ReservedAgent.Id
	}
	return j
}

func convAgent(a taskagent.TaskAgent) Agent {
	out := Agent{Name: str(a.Name), Version: str(a.Version), StatusChangedOn: tm(a.StatusChangedOn),
		CreatedOn: tm(a.CreatedOn), AssignedRequest: convRequest(a.AssignedRequest)}
	if a.Id != nil {
		out.ID = *a.Id
	}
	if a.Status != nil {
		out.Status = string(*a.Status)
	}
	if a.Enabled != nil {
		out.Enabled = *a.Enabled
	}
	if au := a.Authorization; au != nil {
		if au.ClientId != nil {
			out.ClientID = au.ClientId.String()
		}
		if au.PublicKey != nil && au.PublicKey.Modulus != nil {
			out.PublicKeyModulus = *au.PublicKey.Modulus
		}
	}
	return out
}

// Agent finds an agent by name, with its assigned request; nil, nil when the pool has none.
func (c *Client) Agent(ctx context.Context, poolID int, name string) (*Agent, error) {
	ta, err := c.taskagent(ctx)
	if err != nil {
		return nil, c.explain(err, "look up agent "+strconv.Quote(name))
	}
	yes := true
	list, err := ta.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID, AgentName: &name, IncludeAssignedRequest: &yes})
	if err != nil {
		return nil, c.explain(err, "look up agent "+strconv.Quote(name))
	}
	if list != nil {
		for _, a := range *list {
			if a.Name != nil && strings.EqualFold(*a.Name, name) {
				ag := convAgent(a)
				return &ag, nil
			}
		}
	}
	return nil, nil
}

// Agents lists every agent of the pool with status, statusChangedOn and assigned request.
func (c *Client) Agents(ctx context.Context, poolID int) ([]Agent, error) {
	ta, err := c.taskagent(ctx)
	if err != nil {
		return nil, c.explain(err, "list the pool's agents")
	}
	yes := true
	list, err := ta.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID, IncludeAssignedRequest: &yes})
	if err != nil {
		return nil, c.explain(err, "list the pool's agents")
	}
	var out []Agent
	if list != nil {
		out = make([]Agent, 0, len(*list))
		for _, a := range *list {
			out = append(out, convAgent(a))
		}
	}
	return out, nil
}

// SetEnabled enables or disables an agent (a disabled agent is assigned no new job).
func (c *Client) SetEnabled(ctx context.Context, poolID, agentID int, enabled bool) error {
	ta, err := c.taskagent(ctx)
	if err == nil {
		_, err = ta.UpdateAgent(ctx, taskagent.UpdateAgentArgs{PoolId: &poolID, AgentId: &agentID,
			Agent: &taskagent.TaskAgent{Id: &agentID, Enabled: &enabled}})
	}
	if err != nil {
		what := "disable"
		if enabled {
			what = "enable"
		}
		return c.explain(err, fmt.Sprintf("%s agent %d", what, agentID))
	}
	return nil
}

// DeleteAgent removes an agent from the pool. An agent the server no longer knows counts as
// removed (a retried DELETE whose first answer was lost lands here). An agent still holding a job
// gives an error wrapping ErrAgentInUse.
// AgentByID reads one agent with its authorization (client id and public key), which the
// listing by name leaves out; nil, nil when the pool has no agent with that id.
func (c *Client) AgentByID(ctx context.Context, poolID, agentID int) (*Agent, error) {
	var ta taskagent.TaskAgent
	err := c.sendOne(ctx, http.MethodGet, locAgents, map[string]string{"poolId": strconv.Itoa(poolID), "agentId": strconv.Itoa(agentID)}, nil, &ta)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return nil, nil
		}
		return nil, c.explain(err, fmt.Sprintf("look up agent %d", agentID))
	}
	ag := convAgent(ta)
	return &ag, nil
}

func (c *Client) DeleteAgent(ctx context.Context, poolID, agentID int) error {
	err := c.send(ctx, http.MethodDelete, locAgents, map[string]string{"poolId": strconv.Itoa(poolID), "agentId": strconv.Itoa(agentID)}, nil, nil)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return nil
		}
		return c.explain(err, fmt.Sprintf("delete agent %d", agentID))
	}
	return nil
}

// probeAgentID is an agent id no pool has (the largest int32); see CanManage.
const probeAgentID = 2147483647

// CanManage checks that the credential may manage the pool's agents without changing anything:
// it PATCHes an agent id that does not exist with a body that changes no field. The server checks
// the pool's Manage permission before it looks the agent up, so a credential that may manage gets
// 404 (or 400), and one that may only read gets 403. Nothing is registered or modified.
func (c *Client) CanManage(ctx context.Context, poolID int) error {
	ta, err := c.taskagent(ctx)
	if err == nil {
		id := probeAgentID
		_, err = ta.UpdateAgent(ctx, taskagent.UpdateAgentArgs{PoolId: &poolID, AgentId: &id, Agent: &taskagent.TaskAgent{Id: &id}})
	}
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusBadRequest) {
		return nil
	}
	if errors.As(err, &ae) && ae.Status == http.StatusForbidden {
		return exit.Auth(fmt.Errorf("the credential may read agent pool %d at %s but not manage its agents (HTTP 403: %s); grant the PAT the scope Agent Pools (read & manage) and the user or service principal the Administrator role on the pool", poolID, c.url, ae.Message))
	}
	return c.explain(err, "check permission to manage the pool's agents")
}

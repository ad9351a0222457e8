package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ErrNotFound is returned by control calls naming a pool, agent or request that does not exist.
var ErrNotFound = errors.New("not found")

// AddPool creates a pool (or finds an existing one with that name) and returns its id.
func (s *Server) AddPool(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.poolByName(name); p != nil {
		return p.id
	}
	p := &pool{id: s.nextPoolID, name: name, createdOn: s.now(), byName: map[string]*agent{}}
	s.nextPoolID++
	s.pools = append(s.pools, p)
	s.poolByID[p.id] = p
	return p.id
}

// PoolID returns the id of the pool with that name.
func (s *Server) PoolID(name string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.poolByName(name); p != nil {
		return p.id, true
	}
	return 0, false
}

// AddToken registers a PAT (sent as the Basic password) or bearer token with a scope.
func (s *Server) AddToken(token, scope string) error {
	if token == "" {
		return errors.New("sim: token must not be empty")
	}
	if scope != ScopeManage && scope != ScopeRead {
		return fmt.Errorf("sim: token scope %q: want %q or %q", scope, ScopeManage, ScopeRead)
	}
	s.mu.Lock()
	s.tokens[token] = scope
	s.mu.Unlock()
	return nil
}

// RemoveToken revokes a token (e.g. to simulate a rotated or expired PAT).
func (s *Server) RemoveToken(token string) {
	s.mu.Lock()
	delete(s.tokens, token)
	s.mu.Unlock()
}

// QueueJob queues a job request and returns its id. An idle, enabled agent of the pool gets it at its next poll.
func (s *Server) QueueJob(spec JobSpec) (int64, error) {
	if spec.Name == "" {
		spec.Name = "Job"
	}
	if spec.Result == "" {
		spec.Result = "succeeded"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *pool
	if spec.Pool == "" {
		if len(s.pools) == 0 {
			return 0, fmt.Errorf("sim: queue job: no pool exists: %w", ErrNotFound)
		}
		p = s.pools[0]
	} else if p = s.poolByName(spec.Pool); p == nil {
		return 0, fmt.Errorf("sim: queue job: pool %q: %w", spec.Pool, ErrNotFound)
	}
	spec.Pool = p.name
	r := &request{
		id:        s.nextReqID,
		pool:      p,
		spec:      spec,
		jobID:     uuid.New(),
		lockToken: uuid.New(),
		queueTime: s.now(),
	}
	s.nextReqID++
	s.requests = append(s.requests, r)
	s.reqByID[r.id] = r
	s.queue = append(s.queue, r)
	s.broadcast()
	return r.id, nil
}

// CancelJob cancels a request: a queued one finishes "canceled" at once; an assigned one gets a
// JobCancellation message to its agent, which then finishes it.
func (s *Server) CancelJob(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reqByID[id]
	if r == nil {
		return fmt.Errorf("sim: cancel job %d: %w", id, ErrNotFound)
	}
	if !r.finishTime.IsZero() {
		return nil
	}
	if r.agent == nil {
		s.finishRequest(r, "canceled", s.now())
		return nil
	}
	s.addMessage(r.agent, MsgJobCancel, map[string]string{"jobId": r.jobID.String()})
	return nil
}

func (s *Server) agentView(a *agent) AgentView {
	v := AgentView{
		ID:              a.id,
		Pool:            a.pool.name,
		Name:            a.name,
		Status:          s.agentStatus(a),
		Enabled:         a.enabled,
		StatusChangedOn: a.statusChangedOn,
		Version:         a.version,
		CreatedOn:       a.createdOn,
		HasSession:      a.session != nil,
	}
	if a.assigned != nil {
		v.AssignedRequestID = a.assigned.id
	}
	return v
}

// Agents lists the agents of a pool ("" for all pools), ordered by pool and id.
func (s *Server) Agents(pool string) []AgentView {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var out []AgentView
	for _, p := range s.pools {
		if pool != "" && !strings.EqualFold(pool, p.name) {
			continue
		}
		for _, a := range p.agents {
			s.refreshAgent(a, now)
		}
		for _, a := range p.agents {
			out = append(out, s.agentView(a))
		}
	}
	return out
}

// Agent returns one agent by pool ("" for any pool) and name.
func (s *Server) Agent(pool, name string) (AgentView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.findAgent(pool, name)
	if a == nil {
		return AgentView{}, false
	}
	s.refreshAgent(a, s.now())
	return s.agentView(a), true
}

func (s *Server) findAgent(pool, name string) *agent {
	for _, p := range s.pools {
		if pool != "" && !strings.EqualFold(pool, p.name) {
			continue
		}
		if a := p.byName[strings.ToLower(name)]; a != nil {
			return a
		}
	}
	return nil
}

// DeleteAgent removes an agent from the server side, even while it runs a job (its request
// is abandoned), e.g. to make the listener fail with MissingAgent.
func (s *Server) DeleteAgent(pool, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.findAgent(pool, name)
	if a == nil {
		return fmt.Errorf("sim: delete agent %q in pool %q: %w", name, pool, ErrNotFound)
	}
	s.removeAgent(a, s.now())
	return nil
}

// SetAgentEnabled enables or disables an agent from the server side.
func (s *Server) SetAgentEnabled(pool, name string, enabled bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.findAgent(pool, name)
	if a == nil {
		return fmt.Errorf("sim: enable agent %q in pool %q: %w", name, pool, ErrNotFound)
	}
	a.enabled = enabled
	s.broadcast()
	return nil
}

func (s *Server) requestView(r *request) RequestView {
	return RequestView{
		ID:          r.id,
		Pool:        r.pool.name,
		AgentName:   r.agentName,
		Name:        r.spec.Name,
		JobID:       r.jobID.String(),
		QueueTime:   r.queueTime,
		AssignTime:  r.assignTime,
		ReceiveTime: r.receiveTime,
		FinishTime:  r.finishTime,
		Result:      r.result,
	}
}

func (s *Server) refreshAll(now time.Time) {
	for _, a := range s.agentByID {
		if a.assigned != nil {
			s.refreshAgent(a, now)
		}
	}
}

// Requests lists every job request, oldest first.
func (s *Server) Requests() []RequestView {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshAll(s.now())
	out := make([]RequestView, 0, len(s.requests))
	for _, r := range s.requests {
		out = append(out, s.requestView(r))
	}
	return out
}

// Request returns one job request.
func (s *Server) Request(id int64) (RequestView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reqByID[id]
	if r == nil {
		return RequestView{}, false
	}
	if r.agent != nil {
		s.refreshAgent(r.agent, s.now())
	}
	return s.requestView(r), true
}

// RequestUpdate sends the agent an AgentRefresh message asking it to update to version.
func (s *Server) RequestUpdate(agentName, version string) error {
	if _, _, _, err := parseVersion(version); err != nil {
		return fmt.Errorf("sim: update version %q: %w", version, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.findAgent("", agentName)
	if a == nil {
		return fmt.Errorf("sim: update agent %q: %w", agentName, ErrNotFound)
	}
	s.addMessage(a, MsgAgentRefresh, map[string]any{"agentId": a.id, "targetVersion": version})
	return nil
}

// Script sends the agent a SimScript message (body: the JSON of script, e.g. {"exit":2}).
func (s *Server) Script(agentName string, script map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.findAgent("", agentName)
	if a == nil {
		return fmt.Errorf("sim: script agent %q: %w", agentName, ErrNotFound)
	}
	if script == nil {
		script = map[string]any{}
	}
	s.addMessage(a, MsgSimScript, script)
	return nil
}

// SeedAgents adds n agents named namePrefix+"0" .. namePrefix+"<n-1>" with a fixed status
// ("online" or "offline") and statusChangedOn, which stay as seeded until an agent opens a session.
func (s *Server) SeedAgents(pool string, n int, status string, statusChangedOn time.Time, namePrefix string) error {
	if status != statusOnline && status != statusOffline {
		return fmt.Errorf("sim: seed status %q: want online or offline", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.poolByName(pool)
	if p == nil {
		return fmt.Errorf("sim: seed agents: pool %q: %w", pool, ErrNotFound)
	}
	for i := range n {
		if p.byName[strings.ToLower(namePrefix+strconv.Itoa(i))] != nil {
			return fmt.Errorf("sim: seed agents: %s%d already exists in pool %s", namePrefix, i, p.name)
		}
	}
	now := s.now()
	if statusChangedOn.IsZero() {
		statusChangedOn = now
	}
	statusChangedOn = statusChangedOn.UTC()
	p.agents = append(make([]*agent, 0, len(p.agents)+n), p.agents...)
	for i := range n {
		a := &agent{
			id:                s.nextAgentID,
			pool:              p,
			name:              namePrefix + strconv.Itoa(i),
			version:           "4.261.0",
			osDescription:     "Linux (simulated)",
			provisioningState: "Provisioned",
			enabled:           true,
			maxParallelism:    1,
			createdOn:         statusChangedOn,
			statusChangedOn:   statusChangedOn,
			online:            status == statusOnline,
			static:            true,
			clientID:          uuid.New(),
		}
		s.nextAgentID++
		p.agents = append(p.agents, a)
		p.byName[strings.ToLower(a.name)] = a
		s.agentByID[a.id] = a
		s.agentByCID[a.clientID] = a
	}
	s.broadcast()
	return nil
}

// WaitAgent waits until cond holds for the named agent. While the agent does not exist, cond
// sees a zero AgentView (ID 0), so `func(a AgentView) bool { return a.ID == 0 }` waits for deletion.
func (s *Server) WaitAgent(ctx context.Context, pool, name string, cond func(AgentView) bool) (AgentView, error) {
	return waitFor(ctx, s, func() (AgentView, bool) {
		v, _ := s.Agent(pool, name)
		return v, cond(v)
	})
}

// WaitRequest waits until cond holds for the job request.
func (s *Server) WaitRequest(ctx context.Context, id int64, cond func(RequestView) bool) (RequestView, error) {
	return waitFor(ctx, s, func() (RequestView, bool) {
		v, _ := s.Request(id)
		return v, cond(v)
	})
}

// waitFor re-checks on every state change, and every 20 ms for time-driven transitions.
func waitFor[T any](ctx context.Context, s *Server, check func() (T, bool)) (T, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		v, ok := check()
		if ok {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("sim: wait: %w (last state %+v)", ctx.Err(), v)
		case <-ch:
		case <-tick.C:
		}
	}
}

// ---- the same over HTTP ----

func ctlError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func ctlStatus(err error) int {
	if errors.Is(err, ErrNotFound) {
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

func ctlDecode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		ctlError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

func (s *Server) serveControl(w http.ResponseWriter, r *http.Request, segs []string) {
	if len(segs) == 0 {
		ctlError(w, http.StatusNotFound, errors.New("no control route; see /_sim/health"))
		return
	}
	name := func(i int) string {
		v, _ := url.PathUnescape(segs[i])
		return v
	}
	m := r.Method
	switch {
	case segs[0] == "health" && m == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "orgUrl": s.OrgURL()})
	case segs[0] == "pools" && len(segs) == 1 && m == http.MethodPost:
		var in struct {
			Name string `json:"name"`
		}
		if !ctlDecode(w, r, &in) {
			return
		}
		if in.Name == "" {
			ctlError(w, http.StatusBadRequest, errors.New("name is required"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"id": s.AddPool(in.Name)})
	case segs[0] == "tokens" && len(segs) == 1 && m == http.MethodPost:
		var in struct{ Token, Scope string }
		if !ctlDecode(w, r, &in) {
			return
		}
		if err := s.AddToken(in.Token, in.Scope); err != nil {
			ctlError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "tokens" && len(segs) == 2 && m == http.MethodDelete:
		s.RemoveToken(name(1))
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "jobs" && len(segs) == 1 && m == http.MethodPost:
		var in JobSpec
		if !ctlDecode(w, r, &in) {
			return
		}
		id, err := s.QueueJob(in)
		if err != nil {
			ctlError(w, ctlStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int64{"requestId": id})
	case segs[0] == "jobs" && len(segs) == 3 && segs[2] == "cancel" && m == http.MethodPost:
		id, err := strconv.ParseInt(segs[1], 10, 64)
		if err == nil {
			err = s.CancelJob(id)
		}
		if err != nil {
			ctlError(w, ctlStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "agents" && len(segs) == 1 && m == http.MethodGet:
		out := s.Agents(r.URL.Query().Get("pool"))
		if out == nil {
			out = []AgentView{}
		}
		writeJSON(w, http.StatusOK, out)
	case segs[0] == "agents" && len(segs) == 3 && m == http.MethodDelete:
		if err := s.DeleteAgent(name(1), name(2)); err != nil {
			ctlError(w, ctlStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "agents" && len(segs) == 4 && segs[3] == "enabled" && m == http.MethodPost:
		var in struct {
			Enabled bool `json:"enabled"`
		}
		if !ctlDecode(w, r, &in) {
			return
		}
		if err := s.SetAgentEnabled(name(1), name(2), in.Enabled); err != nil {
			ctlError(w, ctlStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "agents" && len(segs) == 3 && segs[2] == "update" && m == http.MethodPost:
		var in struct {
			Version string `json:"version"`
		}
		if !ctlDecode(w, r, &in) {
			return
		}
		if err := s.RequestUpdate(name(1), in.Version); err != nil {
			ctlError(w, ctlStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "agents" && len(segs) == 3 && segs[2] == "script" && m == http.MethodPost:
		var in map[string]any
		if !ctlDecode(w, r, &in) {
			return
		}
		if err := s.Script(name(1), in); err != nil {
			ctlError(w, ctlStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "requests" && len(segs) == 1 && m == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Requests())
	case segs[0] == "faults" && len(segs) == 1 && m == http.MethodPost:
		var in FaultSpec
		if !ctlDecode(w, r, &in) {
			return
		}
		id, err := s.Fault(in)
		if err != nil {
			ctlError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"id": id})
	case segs[0] == "faults" && len(segs) == 1 && m == http.MethodDelete:
		s.ClearFaults()
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "ratelimits" && len(segs) == 1 && m == http.MethodPost:
		var in RateLimitSpec
		if !ctlDecode(w, r, &in) {
			return
		}
		if err := s.RateLimit(in); err != nil {
			ctlError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "ratelimits" && len(segs) == 1 && m == http.MethodDelete:
		s.ClearRateLimits()
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "packages" && len(segs) == 1 && m == http.MethodPost:
		var in PackageSpec
		if !ctlDecode(w, r, &in) {
			return
		}
		if err := s.AddPackage(in); err != nil {
			ctlError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "log" && len(segs) == 1 && m == http.MethodGet:
		out := s.RequestLog()
		if out == nil {
			out = []LoggedRequest{}
		}
		writeJSON(w, http.StatusOK, out)
	case segs[0] == "log" && len(segs) == 1 && m == http.MethodDelete:
		s.ResetRequestLog()
		writeJSON(w, http.StatusOK, map[string]any{})
	case segs[0] == "seed" && len(segs) == 1 && m == http.MethodPost:
		var in SeedSpec
		if !ctlDecode(w, r, &in) {
			return
		}
		if err := s.SeedAgents(in.Pool, in.N, in.Status, in.StatusChangedOn, in.NamePrefix); err != nil {
			ctlError(w, ctlStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	default:
		ctlError(w, http.StatusNotFound, fmt.Errorf("no control route %s /_sim/%s", m, strings.Join(segs, "/")))
	}
}

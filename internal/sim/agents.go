package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "VssPropertyValidationException", "The request body is not valid JSON: "+err.Error())
		return false
	}
	return true
}

func agentNotFound(w http.ResponseWriter, pl *pool, id string) {
	writeError(w, http.StatusNotFound, "TaskAgentNotFoundException",
		fmt.Sprintf("No agent found in pool %s which has ID %s.", pl.name, id))
}

// lookupAgent finds an agent of pool pl by its id string. Call with s.mu held.
func (s *Server) lookupAgent(pl *pool, id string) *agent {
	n, err := strconv.Atoi(id)
	if err != nil {
		return nil
	}
	a := s.agentByID[n]
	if a == nil || a.pool != pl {
		return nil
	}
	return a
}

func (s *Server) handleAgents(w http.ResponseWriter, r *http.Request, pl *pool, id string) {
	switch {
	case r.Method == http.MethodGet && id == "":
		s.listAgents(w, r, pl)
	case r.Method == http.MethodGet:
		s.mu.Lock()
		a := s.lookupAgent(pl, id)
		if a == nil {
			s.mu.Unlock()
			agentNotFound(w, pl, id)
			return
		}
		s.refreshAgent(a, s.now())
		t := s.wireAgent(a, agentDetail{
			assigned:      boolQuery(r, "includeAssignedRequest"),
			lastCompleted: boolQuery(r, "includeLastCompletedRequest"),
			caps:          boolQuery(r, "includeCapabilities"),
			auth:          true,
		})
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, t)
	case r.Method == http.MethodPost && id == "":
		s.addAgent(w, r, pl)
	case r.Method == http.MethodPut && id != "":
		s.replaceAgent(w, r, pl, id)
	case r.Method == http.MethodPatch && id != "":
		s.updateAgent(w, r, pl, id)
	case r.Method == http.MethodDelete && id != "":
		s.deleteAgent(w, pl, id)
	default:
		notFound(w, r)
	}
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request, pl *pool) {
	name := r.URL.Query().Get("agentName")
	d := agentDetail{
		assigned:      boolQuery(r, "includeAssignedRequest"),
		lastCompleted: boolQuery(r, "includeLastCompletedRequest"),
		caps:          boolQuery(r, "includeCapabilities"),
	}
	s.mu.Lock()
	now := s.now()
	var out []agentJSON
	if name != "" {
		if a := pl.byName[strings.ToLower(name)]; a != nil {
			s.refreshAgent(a, now)
			out = append(out, s.wireAgent(a, d))
		}
	} else {
		out = make([]agentJSON, 0, len(pl.agents))
		for _, a := range pl.agents {
			s.refreshAgent(a, now)
		}
		// refreshAgent may abandon requests but never removes agents, so the slice is stable.
		for _, a := range pl.agents {
			out = append(out, s.wireAgent(a, d))
		}
	}
	s.mu.Unlock()
	writeCollection(w, out)
}

// applyKey installs the agent's public key from the request, if any.
func (s *Server) applyKey(a *agent, auth *taskagent.TaskAgentAuthorization) error {
	if auth == nil || auth.PublicKey == nil {
		return nil
	}
	var exp, mod []byte
	if auth.PublicKey.Exponent != nil {
		exp = *auth.PublicKey.Exponent
	}
	if auth.PublicKey.Modulus != nil {
		mod = *auth.PublicKey.Modulus
	}
	key, err := parsePublicKey(exp, mod)
	if err != nil {
		return err
	}
	a.pubKey = key
	a.pubKeyWire = &taskagent.TaskAgentPublicKey{Exponent: &exp, Modulus: &mod}
	return nil
}

func (s *Server) addAgent(w http.ResponseWriter, r *http.Request, pl *pool) {
	var in taskagent.TaskAgent
	if !decodeBody(w, r, &in) {
		return
	}
	if in.Name == nil || strings.TrimSpace(*in.Name) == "" {
		writeError(w, http.StatusBadRequest, "ArgumentNullException", "Value cannot be null.\r\nParameter name: agent.Name")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if pl.byName[strings.ToLower(*in.Name)] != nil {
		writeError(w, http.StatusConflict, "TaskAgentExistsException",
			fmt.Sprintf("Pool %s already contains an agent with name %s.", pl.name, *in.Name))
		return
	}
	a := &agent{
		id:                s.nextAgentID,
		pool:              pl,
		name:              *in.Name,
		enabled:           true,
		maxParallelism:    1,
		provisioningState: "Provisioned",
		createdOn:         now,
		statusChangedOn:   now,
		clientID:          uuid.New(),
		systemCaps:        map[string]string{},
		userCaps:          map[string]string{},
	}
	applyAgentFields(a, &in)
	if err := s.applyKey(a, in.Authorization); err != nil {
		writeError(w, http.StatusBadRequest, "ArgumentException", "Invalid agent authorization: "+err.Error())
		return
	}
	s.nextAgentID++
	s.registerAgent(a)
	s.log.Debug("sim: agent added", "pool", pl.name, "agent", a.name, "id", a.id)
	writeJSON(w, http.StatusOK, s.wireAgent(a, agentDetail{caps: true, auth: true, authURL: s.authURL(r)}))
}

func (s *Server) registerAgent(a *agent) {
	a.pool.agents = append(a.pool.agents, a)
	a.pool.byName[strings.ToLower(a.name)] = a
	s.agentByID[a.id] = a
	s.agentByCID[a.clientID] = a
	s.broadcast()
}

// applyAgentFields copies the settable fields present in a request body.
func applyAgentFields(a *agent, in *taskagent.TaskAgent) {
	if in.Version != nil {
		a.version = *in.Version
	}
	if in.OsDescription != nil {
		a.osDescription = *in.OsDescription
	}
	if in.Enabled != nil {
		a.enabled = *in.Enabled
	}
	if in.MaxParallelism != nil {
		a.maxParallelism = *in.MaxParallelism
	}
	if in.ProvisioningState != nil {
		a.provisioningState = *in.ProvisioningState
	}
	if in.AccessPoint != nil {
		a.accessPoint = *in.AccessPoint
	}
	if in.SystemCapabilities != nil {
		a.systemCaps = copyMap(*in.SystemCapabilities)
	}
	if in.UserCapabilities != nil {
		a.userCaps = copyMap(*in.UserCapabilities)
	}
}

func (s *Server) rename(a *agent, name string) bool {
	if strings.EqualFold(name, a.name) {
		a.name = name
		return true
	}
	if a.pool.byName[strings.ToLower(name)] != nil {
		return false
	}
	delete(a.pool.byName, strings.ToLower(a.name))
	a.name = name
	a.pool.byName[strings.ToLower(name)] = a
	return true
}

func (s *Server) replaceAgent(w http.ResponseWriter, r *http.Request, pl *pool, id string) {
	var in taskagent.TaskAgent
	if !decodeBody(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupAgent(pl, id)
	if a == nil {
		agentNotFound(w, pl, id)
		return
	}
	now := s.now()
	if in.Name != nil && *in.Name != "" && !s.rename(a, *in.Name) {
		writeError(w, http.StatusConflict, "TaskAgentExistsException",
			fmt.Sprintf("Pool %s already contains an agent with name %s.", pl.name, *in.Name))
		return
	}
	if err := s.applyKey(a, in.Authorization); err != nil {
		writeError(w, http.StatusBadRequest, "ArgumentException", "Invalid agent authorization: "+err.Error())
		return
	}
	applyAgentFields(a, &in)
	// The replaced instance loses its session and its tokens; the new one starts fresh.
	a.keyGen++
	a.static = false
	s.dropSession(a, now)
	s.log.Debug("sim: agent replaced", "pool", pl.name, "agent", a.name, "id", a.id)
	writeJSON(w, http.StatusOK, s.wireAgent(a, agentDetail{caps: true, auth: true, authURL: s.authURL(r)}))
}

func (s *Server) updateAgent(w http.ResponseWriter, r *http.Request, pl *pool, id string) {
	var in taskagent.TaskAgent
	if !decodeBody(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupAgent(pl, id)
	if a == nil {
		agentNotFound(w, pl, id)
		return
	}
	if in.Name != nil && *in.Name != "" && !s.rename(a, *in.Name) {
		writeError(w, http.StatusConflict, "TaskAgentExistsException",
			fmt.Sprintf("Pool %s already contains an agent with name %s.", pl.name, *in.Name))
		return
	}
	applyAgentFields(a, &in)
	s.refreshAgent(a, s.now())
	s.broadcast()
	writeJSON(w, http.StatusOK, s.wireAgent(a, agentDetail{caps: true}))
}

func (s *Server) deleteAgent(w http.ResponseWriter, pl *pool, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.lookupAgent(pl, id)
	if a == nil {
		agentNotFound(w, pl, id)
		return
	}
	now := s.now()
	s.refreshAgent(a, now)
	if a.assigned != nil {
		writeRaw(w, http.StatusBadRequest, AgentInUseBody(a.name))
		return
	}
	s.removeAgent(a, now)
	s.log.Debug("sim: agent deleted", "pool", pl.name, "agent", a.name, "id", a.id)
	w.WriteHeader(http.StatusNoContent)
}

// ---- sessions ----

func (s *Server) handleSessions(w http.ResponseWriter, r *http.Request, p *principal, pl *pool, id string) {
	switch {
	case r.Method == http.MethodPost && id == "":
		s.createSession(w, r, p, pl)
	case r.Method == http.MethodDelete && id != "":
		sid, ok := parseUUID(id)
		if !ok {
			writeError(w, http.StatusBadRequest, "ArgumentException", "The session id is not a GUID.")
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		sess := s.sessions[sid]
		if sess == nil || sess.agent.pool != pl {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if p.agent != nil && p.agent != sess.agent {
			forbidden(w, p.name, pl.name)
			return
		}
		if sess.agent.session == sess {
			s.dropSession(sess.agent, s.now())
		} else {
			delete(s.sessions, sid)
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		notFound(w, r)
	}
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request, p *principal, pl *pool) {
	var in taskagent.TaskAgentSession
	if !decodeBody(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var a *agent
	ref := "?"
	if in.Agent != nil && in.Agent.Id != nil {
		ref = strconv.Itoa(*in.Agent.Id)
		a = s.lookupAgent(pl, ref)
	} else if in.Agent != nil && in.Agent.Name != nil {
		ref = *in.Agent.Name
		a = pl.byName[strings.ToLower(*in.Agent.Name)]
	}
	if a == nil {
		agentNotFound(w, pl, ref)
		return
	}
	if p.agent != nil && p.agent != a {
		forbidden(w, p.name, pl.name)
		return
	}
	now := s.now()
	s.refreshAgent(a, now)
	if s.sessionLive(a, now) {
		writeError(w, http.StatusConflict, "TaskAgentSessionConflictException", "A session for this agent already exists.")
		return
	}
	if a.session != nil {
		delete(s.sessions, a.session.id)
	}
	sess := &session{id: uuid.New(), agent: a, createdOn: now}
	if in.OwnerName != nil {
		sess.ownerName = *in.OwnerName
	}
	if in.Agent.Version != nil && *in.Agent.Version != "" {
		a.version = *in.Agent.Version
	}
	if in.Agent.OsDescription != nil && *in.Agent.OsDescription != "" {
		a.osDescription = *in.Agent.OsDescription
	}
	s.sessionCapabilities(a, in.SystemCapabilities)
	s.sessions[sess.id] = sess
	a.session = sess
	if a.static {
		a.static = false
		a.online = false
	}
	s.markSeen(a, now)
	s.broadcast()
	sid := sess.id
	writeJSON(w, http.StatusOK, taskagent.TaskAgentSession{
		SessionId: &sid,
		OwnerName: ptr(sess.ownerName),
		Agent:     s.wireAgentRef(a),
	})
}

// ---- messages ----

func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request, p *principal, pl *pool, id string) {
	sid, ok := parseUUID(r.URL.Query().Get("sessionId"))
	if !ok {
		writeError(w, http.StatusBadRequest, "ArgumentException", "The sessionId query parameter must be a GUID.")
		return
	}
	switch {
	case r.Method == http.MethodGet && id == "":
		s.pollMessages(w, r, p, pl, sid)
	case r.Method == http.MethodDelete && id != "":
		mid, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "ArgumentException", "The message id is not a number.")
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		sess := s.sessions[sid]
		if sess == nil || sess.agent.pool != pl {
			writeError(w, http.StatusNotFound, "TaskAgentSessionExpiredException", fmt.Sprintf("The session %s has expired.", sid))
			return
		}
		if p.agent != nil && p.agent != sess.agent {
			forbidden(w, p.name, pl.name)
			return
		}
		a := sess.agent
		for i, m := range a.messages {
			if m.id == mid {
				a.messages = append(a.messages[:i:i], a.messages[i+1:]...)
				break
			}
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		notFound(w, r)
	}
}

func (s *Server) pollMessages(w http.ResponseWriter, r *http.Request, p *principal, pl *pool, sid uuid.UUID) {
	var lastID uint64
	if v := r.URL.Query().Get("lastMessageId"); v != "" {
		lastID, _ = strconv.ParseUint(v, 10, 64)
	}
	timer := time.NewTimer(s.opts.PollTimeout)
	defer timer.Stop()
	var polling *agent // set while we count as a poll in progress
	defer func() {
		if polling != nil {
			s.mu.Lock()
			polling.polling--
			polling.lastSeen = s.now()
			s.mu.Unlock()
		}
	}()
	for {
		s.mu.Lock()
		sess := s.sessions[sid]
		if polling != nil && (sess == nil || sess.agent != polling) {
			s.mu.Unlock()
			writeError(w, http.StatusNotFound, "TaskAgentSessionExpiredException", fmt.Sprintf("The session %s has expired.", sid))
			return
		}
		if sess == nil || sess.agent.pool != pl {
			s.mu.Unlock()
			writeError(w, http.StatusNotFound, "TaskAgentSessionExpiredException", fmt.Sprintf("The session %s has expired.", sid))
			return
		}
		a := sess.agent
		if a.deleted {
			s.mu.Unlock()
			agentNotFound(w, pl, strconv.Itoa(a.id))
			return
		}
		if p.agent != nil && p.agent != a {
			s.mu.Unlock()
			forbidden(w, p.name, pl.name)
			return
		}
		now := s.now()
		if polling == nil {
			s.markSeen(a, now)
			a.polling++
			polling = a
			s.refreshAgent(a, now)
		}
		m := nextMessage(a, lastID)
		if m == nil {
			m = s.assignJob(a, now)
		}
		if m != nil {
			mid := m.id
			out := taskagent.TaskAgentMessage{MessageId: &mid, MessageType: ptr(m.typ), Body: ptr(m.body)}
			s.mu.Unlock()
			writeJSON(w, http.StatusOK, out)
			return
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// ---- job requests ----

func (s *Server) handleJobRequests(w http.ResponseWriter, r *http.Request, p *principal, pl *pool, id string) {
	switch {
	case r.Method == http.MethodGet && id == "":
		s.listJobRequests(w, r, pl)
	case r.Method == http.MethodGet:
		s.mu.Lock()
		req := s.lookupRequest(pl, id)
		if req == nil {
			s.mu.Unlock()
			jobNotFound(w, id)
			return
		}
		out := s.wireRequest(req)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	case r.Method == http.MethodPatch && id != "":
		s.patchJobRequest(w, r, p, pl, id)
	default:
		notFound(w, r)
	}
}

func jobNotFound(w http.ResponseWriter, id string) {
	writeError(w, http.StatusNotFound, "TaskAgentJobNotFoundException", fmt.Sprintf("No job request found with ID %s.", id))
}

func (s *Server) lookupRequest(pl *pool, id string) *request {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return nil
	}
	req := s.reqByID[n]
	if req == nil || req.pool != pl {
		return nil
	}
	return req
}

func (s *Server) listJobRequests(w http.ResponseWriter, r *http.Request, pl *pool) {
	q := r.URL.Query()
	agentID, _ := strconv.Atoi(q.Get("agentId"))
	completed := -1
	if v := q.Get("completedRequestCount"); v != "" {
		completed, _ = strconv.Atoi(v)
	}
	top := 0
	if v := q.Get("$top"); v != "" {
		top, _ = strconv.Atoi(v)
	}
	s.mu.Lock()
	now := s.now()
	for _, a := range pl.agents {
		s.refreshAgent(a, now)
	}
	var sel []*request
	for i := len(s.requests) - 1; i >= 0; i-- { // newest first
		req := s.requests[i]
		if req.pool != pl || (agentID != 0 && (req.agent == nil || req.agent.id != agentID)) {
			continue
		}
		if !req.finishTime.IsZero() && completed >= 0 {
			if completed == 0 {
				continue
			}
			completed--
		}
		sel = append(sel, req)
		if top > 0 && len(sel) >= top {
			break
		}
	}
	out := make([]*taskagent.TaskAgentJobRequest, 0, len(sel))
	for _, req := range sel {
		out = append(out, s.wireRequest(req))
	}
	s.mu.Unlock()
	writeCollection(w, out)
}

func (s *Server) patchJobRequest(w http.ResponseWriter, r *http.Request, p *principal, pl *pool, id string) {
	var in taskagent.TaskAgentJobRequest
	if !decodeBody(w, r, &in) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	req := s.lookupRequest(pl, id)
	if req == nil {
		jobNotFound(w, id)
		return
	}
	if p.agent != nil && p.agent != req.agent {
		forbidden(w, p.name, pl.name)
		return
	}
	if lt := r.URL.Query().Get("lockToken"); lt != "" {
		tok, ok := parseUUID(lt)
		if ok && tok != uuid.Nil && tok != req.lockToken {
			writeError(w, http.StatusBadRequest, "TaskAgentJobTokenExpiredException",
				fmt.Sprintf("The lock token for job request %s is not valid.", id))
			return
		}
	}
	now := s.now()
	if in.FinishTime != nil || in.Result != nil {
		result := "succeeded"
		if in.Result != nil && *in.Result != "" {
			result = string(*in.Result)
		}
		at := now
		if in.FinishTime != nil && !in.FinishTime.Time.IsZero() {
			at = in.FinishTime.Time.UTC()
		}
		s.finishRequest(req, result, at)
	} else if req.finishTime.IsZero() {
		if req.receiveTime.IsZero() {
			req.receiveTime = now
		}
		req.lockedUntil = now.Add(lockRenewPeriod)
		s.broadcast()
	}
	writeJSON(w, http.StatusOK, s.wireRequest(req))
}

package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

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

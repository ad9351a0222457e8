package sim

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Job requests: the listener and worker renew, finish and list them.

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

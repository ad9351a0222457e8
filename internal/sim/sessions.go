package sim

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Sessions: the listener opens one before it polls for messages and deletes it when it stops.

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

package sim

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Messages: the listener's long poll and the acknowledgement of what it received.

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

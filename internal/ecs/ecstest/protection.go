package ecstest

import (
	"encoding/json"
	"net/http"
	"time"
)

// The ECS agent's task scale-in protection endpoint.

type protectionErrorBody struct{ Code, Message string }

// SetProtectionError makes every protection request answer with the endpoint's error shape
// (for example "AccessDeniedException" when the task role lacks ecs:UpdateTaskProtection) until
// it is called with an empty code.
func (s *Server) SetProtectionError(code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == "" {
		s.protErr = nil
		return
	}
	s.protErr = &protectionErrorBody{Code: code, Message: message}
}

// ProtectionChanges lists every accepted protection PUT in order.
func (s *Server) ProtectionChanges() []ProtectionChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ProtectionChange(nil), s.changes...)
}

// Protected reports whether the task is protected now (expiry applied).
func (s *Server) Protected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protectedLocked()
}

func (s *Server) protectedLocked() bool {
	if s.protected && !s.opts.Now().Before(s.expiration) {
		s.protected = false
		s.expiration = time.Time{}
	}
	return s.protected
}

func (s *Server) protectionErrorJSON(code, message string) string {
	b, _ := json.Marshal(map[string]any{
		"requestID": "ecstest-request",
		"error":     map[string]string{"Arn": s.TaskARN(), "Code": code, "Message": message},
	})
	return string(b)
}

// protection mirrors the ECS agent's handler: PUT takes {"ProtectionEnabled": bool,
// "ExpiresInMinutes": n} (ProtectionEnabled required, unknown fields rejected, 1..2880), GET
// reports the state. Failures and errors come back in their documented JSON shapes.
func (s *Server) protection(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.protErr != nil {
		writeRaw(w, http.StatusBadRequest, s.protectionErrorJSON(s.protErr.Code, s.protErr.Message))
		return
	}
	if s.opts.Standalone {
		writeJSON(w, http.StatusOK, map[string]any{
			"failure": map[string]any{"Arn": s.TaskARN(), "Detail": nil, "Reason": "TASK_NOT_VALID"},
		})
		return
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut:
		var req struct {
			ProtectionEnabled *bool `json:"ProtectionEnabled"`
			ExpiresInMinutes  *int  `json:"ExpiresInMinutes"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeRaw(w, http.StatusBadRequest, s.protectionErrorJSON("InvalidParameterException", "Invalid request: "+err.Error()))
			return
		}
		if req.ProtectionEnabled == nil {
			writeRaw(w, http.StatusBadRequest, s.protectionErrorJSON("InvalidParameterException", "Invalid request: does not contain 'ProtectionEnabled' field"))
			return
		}
		minutes := 0
		if req.ExpiresInMinutes != nil {
			minutes = *req.ExpiresInMinutes
			if minutes < 1 || minutes > 2880 {
				writeRaw(w, http.StatusBadRequest, s.protectionErrorJSON("InvalidParameterException", "expiresInMinutes must be between 1 and 2880"))
				return
			}
		}
		now := s.opts.Now()
		s.protected = *req.ProtectionEnabled
		s.expiration = time.Time{}
		if s.protected {
			d := minutes
			if d == 0 {
				d = 120
			}
			s.expiration = now.Add(time.Duration(d) * time.Minute)
		}
		s.changes = append(s.changes, ProtectionChange{Time: now, Enabled: s.protected, ExpiresInMinutes: minutes, ExpirationDate: s.expiration})
	default:
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var exp any
	if s.protectedLocked() {
		exp = s.expiration.UTC().Format(time.RFC3339)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"protection": map[string]any{"ExpirationDate": exp, "ProtectionEnabled": s.protected, "TaskArn": s.TaskARN()},
	})
}

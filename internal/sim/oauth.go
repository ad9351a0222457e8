package sim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// handleOAuthToken is the agent's token service: client-credentials with a JWT client assertion
// signed by the agent's RSA key, verified against the public key registered by configure.
func (s *Server) handleOAuthToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form: "+err.Error())
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported", gt))
		return
	}
	if at := r.PostForm.Get("client_assertion_type"); at != clientAssertionType {
		oauthError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("client_assertion_type %q is not supported", at))
		return
	}
	assertion := r.PostForm.Get("client_assertion")
	if assertion == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "client_assertion is required")
		return
	}

	var found *agent
	var gen int
	claims := &jwt.RegisteredClaims{}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30*time.Second),
		jwt.WithTimeFunc(s.now),
	)
	_, err := parser.ParseWithClaims(assertion, claims, func(t *jwt.Token) (any, error) {
		c := t.Claims.(*jwt.RegisteredClaims)
		cid, err := uuid.Parse(c.Subject)
		if err != nil {
			return nil, fmt.Errorf("sub %q is not a client id", c.Subject)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		a := s.agentByCID[cid]
		if a == nil {
			return nil, fmt.Errorf("no agent has client id %s", cid)
		}
		if a.pubKey == nil {
			return nil, fmt.Errorf("agent %s registered no public key", a.name)
		}
		found, gen = a, a.keyGen
		return a.pubKey, nil
	})
	if err == nil {
		switch {
		case claims.Issuer != claims.Subject:
			err = fmt.Errorf("iss %q differs from sub %q", claims.Issuer, claims.Subject)
		case !audienceOK(claims.Audience):
			err = fmt.Errorf("aud %v is not this token endpoint", []string(claims.Audience))
		}
	}
	if err != nil {
		s.log.Debug("sim: oauth rejected", "err", err)
		oauthError(w, http.StatusUnauthorized, "invalid_client", "VS30063: The client assertion is not valid: "+err.Error())
		return
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	tok := "simagent-" + hex.EncodeToString(b[:])
	s.mu.Lock()
	if found.keyGen != gen {
		s.mu.Unlock()
		oauthError(w, http.StatusUnauthorized, "invalid_client", "VS30063: the agent was replaced or deleted")
		return
	}
	s.agentToks[tok] = &agentToken{agent: found, gen: gen, expires: s.now().Add(agentTokenExpiry)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "bearer",
		"expires_in":   int(agentTokenExpiry / time.Second),
	})
}

func audienceOK(aud jwt.ClaimStrings) bool {
	for _, a := range aud {
		if strings.HasSuffix(strings.TrimRight(a, "/"), "/_sim/oauth2/token") {
			return true
		}
	}
	return false
}

package sim

import (
	"net/http"
	"strconv"
	"strings"
)

// The Security service's permission evaluation, limited to the DistributedTask "AgentPools"
// namespace: GET _apis/permissions/{securityNamespaceId}/{permissions}?tokens=AgentPools/{poolId}
// answers one boolean per token: does the caller hold every bit asked for (REST: Security -
// Permissions - Has Permissions; azure-devops-go-api v7 security.HasPermissions). It changes
// nothing, which makes it the honest way to learn whether a credential may manage a pool.

// AgentPoolsNamespace is the DistributedTask security namespace of agent pools.
const AgentPoolsNamespace = "101eae8c-1709-47f9-b228-0e476c35b3ba"

// Bits of the AgentPools namespace.
const (
	PermView   = 1
	PermManage = 2
	PermListen = 4
)

func (s *Server) handlePermissions(w http.ResponseWriter, r *http.Request, p *principal, rest []string) {
	if len(rest) != 2 {
		notFound(w, r)
		return
	}
	if !strings.EqualFold(rest[0], AgentPoolsNamespace) {
		writeError(w, http.StatusNotFound, "SecurityNamespaceNotFoundException", "The security namespace "+rest[0]+" is not known to the simulator.")
		return
	}
	bits, err := strconv.Atoi(rest[1])
	if err != nil || bits <= 0 {
		writeError(w, http.StatusBadRequest, "ArgumentException", "permissions must be a positive integer, got "+rest[1])
		return
	}
	var held int
	switch {
	case p.agent != nil:
		held = PermView | PermListen
	case p.scope == ScopeManage:
		held = PermView | PermManage | PermListen
	default:
		held = PermView
	}
	delim := r.URL.Query().Get("delimiter")
	if delim == "" {
		delim = ","
	}
	var out []bool
	for _, tok := range strings.Split(r.URL.Query().Get("tokens"), delim) {
		ok := held&bits == bits
		if tok != "" {
			s.mu.Lock()
			known := strings.EqualFold(tok, "AgentPools") || s.poolToken(tok)
			s.mu.Unlock()
			ok = ok && known
		}
		out = append(out, ok)
	}
	writeCollection(w, out)
}

// poolToken reports whether tok is AgentPools/{id} of an existing pool. Caller holds s.mu.
func (s *Server) poolToken(tok string) bool {
	id, found := strings.CutPrefix(tok, "AgentPools/")
	if !found {
		return false
	}
	n, err := strconv.Atoi(id)
	return err == nil && s.poolByID[n] != nil
}

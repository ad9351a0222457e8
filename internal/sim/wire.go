package sim

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// Location ids of the REST resources (azure-devops-go-api v7 taskagent and location clients).
const (
	LocResourceAreas  = "e81700f7-3be2-46de-8624-2eb35882fcaa"
	LocConnectionData = "00d9565f-ed9c-4a06-9a50-00e7896ccab4"
	LocPools          = "a8c47e17-4d56-4a56-92bb-de7ea7dc65be"
	LocAgents         = "e298ef32-5878-4cab-993c-043836571f42"
	LocSessions       = "134e239e-2df3-4794-a6f6-24f1f19ec8dc"
	LocMessages       = "c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7"
	LocJobRequests    = "fc825784-c92a-4299-9221-998a02d1b54f"
	LocPackages       = "8ffcd551-079c-493a-9c02-54346299d144"
)

type location struct {
	Area            string `json:"area"`
	ID              string `json:"id"`
	MaxVersion      string `json:"maxVersion"`
	MinVersion      string `json:"minVersion"`
	ReleasedVersion string `json:"releasedVersion"`
	ResourceName    string `json:"resourceName"`
	ResourceVersion int    `json:"resourceVersion"`
	RouteTemplate   string `json:"routeTemplate"`
}

func loc(id, area, resource, route string) location {
	// Every field must be present: the SDK's version negotiation dereferences them all.
	return location{Area: area, ID: id, MinVersion: "1.0", MaxVersion: "7.1", ReleasedVersion: "0.0",
		ResourceName: resource, ResourceVersion: 1, RouteTemplate: route}
}

var locations = []location{
	loc(LocResourceAreas, "Location", "ResourceAreas", "_apis/{resource}/{areaId}"),
	loc(LocConnectionData, "Location", "ConnectionData", "_apis/{resource}"),
	loc(LocPools, "distributedtask", "pools", "_apis/{area}/{resource}/{poolId}"),
	loc(LocAgents, "distributedtask", "agents", "_apis/{area}/pools/{poolId}/{resource}/{agentId}"),
	loc(LocSessions, "distributedtask", "sessions", "_apis/{area}/pools/{poolId}/{resource}/{sessionId}"),
	loc(LocMessages, "distributedtask", "messages", "_apis/{area}/pools/{poolId}/{resource}/{messageId}"),
	loc(LocJobRequests, "distributedtask", "jobrequests", "_apis/{area}/pools/{poolId}/{resource}/{requestId}"),
	loc(LocPackages, "distributedtask", "packages", "_apis/{area}/{resource}/{packageType}/{platform}/{version}"),
}

// principal is who a request authenticated as.
type principal struct {
	kind  string // "token" or "agent"
	scope string
	agent *agent // for agent OAuth tokens
	name  string
}

// authKind classifies the Authorization header for the request log.
func authKind(r *http.Request) string {
	h := r.Header.Get("Authorization")
	switch {
	case len(h) > 6 && strings.EqualFold(h[:6], "basic "):
		return "basic"
	case len(h) > 7 && strings.EqualFold(h[:7], "bearer "):
		return "bearer"
	}
	return "none"
}

// authenticate resolves the credential; nil means 401. Call with s.mu held.
func (s *Server) authenticate(r *http.Request) *principal {
	h := r.Header.Get("Authorization")
	switch authKind(r) {
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[6:]))
		if err != nil {
			return nil
		}
		_, pat, ok := strings.Cut(string(raw), ":")
		if !ok || pat == "" {
			return nil
		}
		if scope, ok := s.tokens[pat]; ok {
			return &principal{kind: "token", scope: scope, name: "Sim User"}
		}
	case "bearer":
		tok := strings.TrimSpace(h[7:])
		if at, ok := s.agentToks[tok]; ok {
			a := at.agent
			if at.gen != a.keyGen || s.now().After(at.expires) {
				return nil
			}
			return &principal{kind: "agent", agent: a, name: "Agent: " + a.name}
		}
		if scope, ok := s.tokens[tok]; ok {
			return &principal{kind: "token", scope: scope, name: "Sim Service Principal"}
		}
	}
	return nil
}

// ---- errors in the service's JSON shape ----

func typeName(key string) string {
	switch key {
	case "UnauthorizedRequestException", "RequestBlockedException":
		return "Microsoft.TeamFoundation.Framework.Server." + key + ", Microsoft.TeamFoundation.Framework.Server"
	}
	return "Microsoft.TeamFoundation.DistributedTask.WebApi." + key + ", Microsoft.TeamFoundation.DistributedTask.WebApi"
}

// ErrorBody is the JSON error body the service sends, e.g. for a Fault's Body.
func ErrorBody(typeKey, message string) string {
	b, _ := json.Marshal(map[string]any{
		"$id":            "1",
		"innerException": nil,
		"message":        message,
		"typeName":       typeName(typeKey),
		"typeKey":        typeKey,
		"errorCode":      0,
		"eventId":        3000,
	})
	return string(b)
}

// AgentInUseBody is the 400 body the service sends when deleting an agent that runs a job.
func AgentInUseBody(agentName string) string {
	return ErrorBody("AgentInUseException", fmt.Sprintf("The agent %s is running a job and cannot be deleted.", agentName))
}

func writeRaw(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func writeError(w http.ResponseWriter, status int, typeKey, message string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri=https://login.microsoftonline.com/common, Basic realm="sim"`)
		w.Header().Set("X-TFS-ServiceError", strings.ReplaceAll(message, "\n", " "))
	}
	writeRaw(w, status, ErrorBody(typeKey, message))
}

func unauthorized(w http.ResponseWriter) {
	writeError(w, http.StatusUnauthorized, "UnauthorizedRequestException",
		"TF400813: The user '' is not authorized to access this resource.")
}

func forbidden(w http.ResponseWriter, who, poolName string) {
	writeError(w, http.StatusForbidden, "AccessDeniedException", fmt.Sprintf(
		"Access denied. %s needs Manage permissions for pool %s to perform the action. For more information, contact the Azure DevOps Server administrator.", who, poolName))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	buf, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "SimInternalException", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(buf)))
	w.WriteHeader(status)
	_, _ = w.Write(buf)
}

type collection[T any] struct {
	Count int `json:"count"`
	Value []T `json:"value"`
}

func writeCollection[T any](w http.ResponseWriter, items []T) {
	if items == nil {
		items = []T{}
	}
	writeJSON(w, http.StatusOK, collection[T]{Count: len(items), Value: items})
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "SimRouteNotFoundException",
		fmt.Sprintf("The simulator has no route for %s %s.", r.Method, r.URL.Path))
}

// ---- routing ----

func (s *Server) buildHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		segs := splitPath(r.URL.Path)
		if len(segs) > 0 && segs[0] == "_sim" {
			if len(segs) > 1 && (segs[1] == "download" || segs[1] == "oauth2") {
				s.wire(w, r, func(w http.ResponseWriter, r *http.Request) { s.serveSimWire(w, r, segs[1:]) })
				return
			}
			s.serveControl(w, r, segs[1:])
			return
		}
		s.wire(w, r, func(w http.ResponseWriter, r *http.Request) { s.serveOrg(w, r, segs) })
	})
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func (s *Server) serveSimWire(w http.ResponseWriter, r *http.Request, segs []string) {
	switch {
	case segs[0] == "download" && len(segs) == 2 && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.handleDownload(w, r, segs[1])
	case segs[0] == "oauth2" && len(segs) == 2 && segs[1] == "token" && r.Method == http.MethodPost:
		s.handleOAuthToken(w, r)
	default:
		notFound(w, r)
	}
}

func (s *Server) serveOrg(w http.ResponseWriter, r *http.Request, segs []string) {
	if len(segs) < 2 || strings.ToLower(segs[0]) != s.orgKey || !strings.EqualFold(segs[1], "_apis") {
		notFound(w, r)
		return
	}
	s.mu.Lock()
	p := s.authenticate(r)
	s.mu.Unlock()
	if p == nil {
		unauthorized(w)
		return
	}
	rest := segs[2:]
	lower := make([]string, len(rest))
	for i, x := range rest {
		lower[i] = strings.ToLower(x)
	}
	switch {
	case len(rest) == 0 && r.Method == http.MethodOptions:
		writeCollection(w, locations)
	case len(rest) >= 1 && lower[0] == "resourceareas" && r.Method == http.MethodGet:
		// An empty list makes the SDK treat us as on-premises: every area lives at the org URL.
		writeCollection(w, []struct{}{})
	case len(rest) == 1 && lower[0] == "connectiondata" && r.Method == http.MethodGet:
		s.handleConnectionData(w, p)
	case len(rest) >= 2 && lower[0] == "distributedtask" && lower[1] == "packages":
		if r.Method != http.MethodGet {
			notFound(w, r)
			return
		}
		s.handlePackages(w, r, rest[2:])
	case len(rest) == 2 && lower[0] == "distributedtask" && lower[1] == "resourceusage" && r.Method == http.MethodGet:
		s.handleResourceUsage(w, r)
	case len(rest) >= 2 && lower[0] == "distributedtask" && lower[1] == "pools":
		s.servePools(w, r, p, rest[2:], lower[2:])
	default:
		notFound(w, r)
	}
}

func (s *Server) handleConnectionData(w http.ResponseWriter, p *principal) {
	id := s.userID
	if p.agent != nil {
		id = p.agent.clientID
	}
	user := map[string]any{
		"id":                  id,
		"descriptor":          "Microsoft.IdentityModel.Claims.ClaimsIdentity;sim\\" + id.String(),
		"subjectDescriptor":   "aad." + id.String(),
		"providerDisplayName": p.name,
		"isActive":            true,
		"properties":          map[string]any{},
		"resourceVersion":     2,
		"metaTypeId":          0,
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"authenticatedUser": user,
		"authorizedUser":    user,
		"instanceId":        s.instanceID,
		"deploymentId":      s.instanceID,
		"deploymentType":    "hosted",
		"locationServiceData": map[string]any{
			"serviceOwner":                "00025394-6065-48ca-87d9-7f5672854ef7",
			"defaultAccessMappingMoniker": "PublicAccessMapping",
			"lastChangeId":                1,
			"lastChangeId64":              1,
		},
	})
}

func (s *Server) servePools(w http.ResponseWriter, r *http.Request, p *principal, rest, lower []string) {
	if len(rest) == 0 {
		if r.Method != http.MethodGet {
			notFound(w, r)
			return
		}
		s.handlePoolList(w, r, p)
		return
	}
	poolID, err := strconv.Atoi(rest[0])
	if err != nil {
		writeError(w, http.StatusBadRequest, "ArgumentException", fmt.Sprintf("The pool id %q is not a number.", rest[0]))
		return
	}
	s.mu.Lock()
	pl := s.poolByID[poolID]
	s.mu.Unlock()
	if pl == nil {
		writeError(w, http.StatusNotFound, "TaskAgentPoolNotFoundException", fmt.Sprintf("Agent pool %d could not be found.", poolID))
		return
	}
	if len(rest) == 1 {
		if r.Method != http.MethodGet {
			notFound(w, r)
			return
		}
		s.mu.Lock()
		wp := s.wirePool(pl)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, wp)
		return
	}
	var id string
	if len(rest) == 3 {
		id = rest[2]
	} else if len(rest) > 3 {
		notFound(w, r)
		return
	}
	// Writes need the manage scope; an agent's own token may use only its session routes.
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	if write && p.agent == nil && p.scope != ScopeManage {
		forbidden(w, p.name, pl.name)
		return
	}
	switch lower[1] {
	case "agents":
		if write && p.agent != nil {
			forbidden(w, p.name, pl.name)
			return
		}
		s.handleAgents(w, r, pl, id)
	case "sessions":
		s.handleSessions(w, r, p, pl, id)
	case "messages":
		s.handleMessages(w, r, p, pl, id)
	case "jobrequests":
		s.handleJobRequests(w, r, p, pl, id)
	default:
		notFound(w, r)
	}
}

func (s *Server) handlePoolList(w http.ResponseWriter, r *http.Request, who *principal) {
	q := r.URL.Query()
	name := q.Get("poolName")
	ptype := q.Get("poolType")
	// actionFilter=manage lists only pools the caller may manage, which is how a client can tell
	// a read-only token from a manage token without trying a write.
	if strings.Contains(strings.ToLower(q.Get("actionFilter")), "manage") && (who.agent != nil || who.scope != ScopeManage) {
		writeCollection(w, []any{})
		return
	}
	s.mu.Lock()
	var out []any
	for _, p := range s.pools {
		if name != "" && !strings.EqualFold(name, p.name) {
			continue
		}
		if ptype != "" && !strings.EqualFold(ptype, "automation") {
			continue
		}
		out = append(out, s.wirePool(p))
	}
	s.mu.Unlock()
	writeCollection(w, out)
}

func boolQuery(r *http.Request, name string) bool {
	v, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return v
}

// parsePublicKey turns the agent's {exponent, modulus} (big-endian bytes) into an RSA key.
func parsePublicKey(exp, mod []byte) (*rsa.PublicKey, error) {
	if len(mod) == 0 || len(exp) == 0 {
		return nil, fmt.Errorf("publicKey needs exponent and modulus")
	}
	e := new(big.Int).SetBytes(exp)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, fmt.Errorf("publicKey exponent out of range")
	}
	n := new(big.Int).SetBytes(mod)
	if n.BitLen() < 1024 {
		return nil, fmt.Errorf("publicKey modulus has %d bits; need at least 1024", n.BitLen())
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

func (s *Server) authURL(r *http.Request) string {
	return s.scheme() + "://" + r.Host + "/_sim/oauth2/token"
}

func parseUUID(v string) (uuid.UUID, bool) {
	id, err := uuid.Parse(v)
	return id, err == nil
}

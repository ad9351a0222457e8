package sim

import (
	"crypto/rsa"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

type azdoTime = azuredevops.Time

// Message types the simulator sends to agents.
const (
	MsgJobRequest    = "PipelineAgentJobRequest"
	MsgJobCancel     = "JobCancellation"
	MsgAgentRefresh  = "AgentRefresh"
	MsgSimScript     = "SimScript"
	statusOnline     = "online"
	statusOffline    = "offline"
	lockRenewPeriod  = 5 * time.Minute
	agentTokenExpiry = time.Hour
)

type pool struct {
	id        int
	name      string
	createdOn time.Time
	agents    []*agent          // id order, so listing needs no sort
	byName    map[string]*agent // lower-case name
}

type agent struct {
	id                int
	pool              *pool
	name              string
	version           string
	osDescription     string
	provisioningState string
	accessPoint       string
	enabled           bool
	maxParallelism    int
	createdOn         time.Time
	systemCaps        map[string]string
	userCaps          map[string]string

	clientID   uuid.UUID
	pubKey     *rsa.PublicKey
	pubKeyWire *taskagent.TaskAgentPublicKey
	keyGen     int // bumped by replace: older OAuth tokens stop working

	online          bool
	statusChangedOn time.Time
	static          bool // seeded: status fixed until the agent opens a session
	session         *session
	lastSeen        time.Time
	polling         int // long polls in progress

	assigned      *request
	lastCompleted *request
	messages      []*message
	deleted       bool
}

type session struct {
	id        uuid.UUID
	agent     *agent
	ownerName string
	createdOn time.Time
}

type message struct {
	id   uint64
	typ  string
	body string
}

type request struct {
	id          int64
	pool        *pool
	spec        JobSpec
	jobID       uuid.UUID
	lockToken   uuid.UUID
	agent       *agent
	agentName   string
	queueTime   time.Time
	assignTime  time.Time
	receiveTime time.Time
	finishTime  time.Time
	lockedUntil time.Time
	result      string
}

type agentToken struct {
	agent   *agent
	gen     int
	expires time.Time
}

type pkg struct {
	spec                PackageSpec
	major, minor, patch int
}

func (s *Server) poolByName(name string) *pool {
	for _, p := range s.pools {
		if strings.EqualFold(p.name, name) {
			return p
		}
	}
	return nil
}

// refreshAgent applies the time-driven transitions (offline after silence, abandoning a request
// of an agent that stayed offline); everything reads agent state through it. Call with s.mu held.
func (s *Server) refreshAgent(a *agent, now time.Time) {
	if !a.static {
		live := a.session != nil && (a.polling > 0 || now.Sub(a.lastSeen) <= s.opts.OfflineAfter)
		if live != a.online {
			a.online = live
			t := now
			if !live && a.session != nil {
				// The agent went silent: it has been offline since its last sign of life plus the grace.
				t = a.lastSeen.Add(s.opts.OfflineAfter)
			}
			if t.Before(a.statusChangedOn) {
				t = a.statusChangedOn
			}
			a.statusChangedOn = t
		}
	}
	if !a.online && a.assigned != nil && s.opts.AbandonAfter > 0 && now.Sub(a.statusChangedOn) >= s.opts.AbandonAfter {
		s.finishRequest(a.assigned, "abandoned", now)
	}
}

// markSeen records a sign of life from the agent (session creation, a poll).
func (s *Server) markSeen(a *agent, now time.Time) {
	s.refreshAgent(a, now)
	a.lastSeen = now
	s.refreshAgent(a, now)
}

// dropSession ends the agent's session now (deleted by the agent, replaced, or agent deleted).
func (s *Server) dropSession(a *agent, now time.Time) {
	s.refreshAgent(a, now)
	if a.session != nil {
		delete(s.sessions, a.session.id)
		a.session = nil
	}
	s.requeueUnreceived(a) // scaling.go
	if a.online && !a.static {
		a.online = false
		a.statusChangedOn = now
	}
	s.broadcast()
}

func (s *Server) sessionLive(a *agent, now time.Time) bool {
	return a.session != nil && (a.polling > 0 || now.Sub(a.lastSeen) <= s.opts.SessionExpiry)
}

func (s *Server) finishRequest(r *request, result string, at time.Time) {
	if !r.finishTime.IsZero() {
		return
	}
	r.finishTime = at
	r.result = result
	if a := r.agent; a != nil && a.assigned == r {
		a.assigned = nil
		a.lastCompleted = r
	}
	for i, q := range s.queue {
		if q == r {
			s.queue = append(s.queue[:i:i], s.queue[i+1:]...)
			break
		}
	}
	s.broadcast()
}

func (s *Server) addMessage(a *agent, typ string, body any) {
	var text string
	switch b := body.(type) {
	case string:
		text = b
	default:
		buf, _ := json.Marshal(b)
		text = string(buf)
	}
	a.messages = append(a.messages, &message{id: s.nextMsgID, typ: typ, body: text})
	s.nextMsgID++
	s.broadcast()
}

// nextMessage is the oldest undeleted message after lastID.
func nextMessage(a *agent, lastID uint64) *message {
	for _, m := range a.messages {
		if m.id > lastID {
			return m
		}
	}
	return nil
}

// assignJob gives the oldest fitting queued request to an idle, enabled agent that is polling.
func (s *Server) assignJob(a *agent, now time.Time) *message {
	if a.assigned != nil || !a.enabled || a.deleted {
		return nil
	}
	for i, r := range s.queue {
		if r.pool != a.pool || (r.spec.Agent != "" && !strings.EqualFold(r.spec.Agent, a.name)) || !s.canAssign(r, a) {
			continue
		}
		s.queue = append(s.queue[:i:i], s.queue[i+1:]...)
		r.agent = a
		r.agentName = a.name
		r.assignTime = now
		r.lockedUntil = now.Add(lockRenewPeriod)
		a.assigned = r
		body := jobMessageBody{
			RequestID:      r.id,
			JobID:          r.jobID.String(),
			JobDisplayName: r.spec.Name,
			LockToken:      r.lockToken.String(),
		}
		body.Sim.DurationMs = r.spec.Duration.Milliseconds()
		body.Sim.Result = r.spec.Result
		body.Sim.Orphans = r.spec.Orphans
		body.Sim.IgnoreCancelMs = r.spec.IgnoreCancel.Milliseconds()
		body.Sim.SigintTimeoutMs, body.Sim.SigtermTimeoutMs = r.spec.SigintTimeoutMs, r.spec.SigtermTimeoutMs
		body.Sim.FailFirstRenew = r.spec.FailFirstRenew
		s.addMessage(a, MsgJobRequest, body)
		return a.messages[len(a.messages)-1]
	}
	return nil
}

type jobMessageBody struct {
	RequestID      int64  `json:"requestId"`
	JobID          string `json:"jobId"`
	JobDisplayName string `json:"jobDisplayName"`
	LockToken      string `json:"lockToken"`
	Sim            struct {
		DurationMs       int64  `json:"durationMs"`
		Result           string `json:"result"`
		Orphans          int    `json:"orphans"`
		IgnoreCancelMs   int64  `json:"ignoreCancelMs"`
		SigintTimeoutMs  int64  `json:"sigintTimeoutMs,omitempty"`
		SigtermTimeoutMs int64  `json:"sigtermTimeoutMs,omitempty"`
		FailFirstRenew   bool   `json:"failFirstRenew,omitempty"`
	} `json:"sim"`
}

func (s *Server) removeAgent(a *agent, now time.Time) {
	// The session stays known so that the agent's next poll learns the agent is gone
	// (404 TaskAgentNotFoundException) rather than being told to open a new session.
	s.refreshAgent(a, now)
	if a.online && !a.static {
		a.online = false
		a.statusChangedOn = now
	}
	a.deleted = true
	a.messages = nil
	p := a.pool
	delete(p.byName, strings.ToLower(a.name))
	for i, x := range p.agents {
		if x == a {
			p.agents = append(p.agents[:i:i], p.agents[i+1:]...)
			break
		}
	}
	delete(s.agentByID, a.id)
	// The agent's OAuth client outlives it, as on the service: a listener of a deleted agent still
	// gets a token and then learns from the session call that the agent is gone (MissingAgent).
	if a.assigned != nil {
		s.finishRequest(a.assigned, "abandoned", now)
	}
	s.broadcast()
}

// Wire conversions. The SDK's own model types guarantee the JSON shape the real client expects.

func tm(t time.Time) *azdoTime {
	if t.IsZero() {
		return nil
	}
	return &azdoTime{Time: t}
}

func (s *Server) agentStatus(a *agent) string {
	if a.online {
		return statusOnline
	}
	return statusOffline
}

func (s *Server) wireAgentRef(a *agent) *taskagent.TaskAgentReference {
	st := taskagent.TaskAgentStatus(s.agentStatus(a))
	return &taskagent.TaskAgentReference{
		Id:                ptr(a.id),
		Name:              ptr(a.name),
		Version:           ptr(a.version),
		OsDescription:     ptr(a.osDescription),
		Enabled:           ptr(a.enabled),
		Status:            &st,
		ProvisioningState: ptr(a.provisioningState),
	}
}

type agentDetail struct {
	assigned, lastCompleted, caps, auth bool
	authURL                             string
}

// agentJSON has the field names and shape of taskagent.TaskAgent but plain values, because
// listing a 10,000-agent pool must stay fast (the pointer-heavy SDK type is ~3x slower to encode).
type agentJSON struct {
	ID                   int                               `json:"id"`
	Name                 string                            `json:"name"`
	Version              string                            `json:"version,omitempty"`
	OsDescription        string                            `json:"osDescription,omitempty"`
	Enabled              bool                              `json:"enabled"`
	Status               string                            `json:"status"`
	ProvisioningState    string                            `json:"provisioningState,omitempty"`
	AccessPoint          string                            `json:"accessPoint,omitempty"`
	MaxParallelism       int                               `json:"maxParallelism"`
	CreatedOn            time.Time                         `json:"createdOn"`
	StatusChangedOn      time.Time                         `json:"statusChangedOn"`
	AssignedRequest      *taskagent.TaskAgentJobRequest    `json:"assignedRequest,omitempty"`
	LastCompletedRequest *taskagent.TaskAgentJobRequest    `json:"lastCompletedRequest,omitempty"`
	SystemCapabilities   map[string]string                 `json:"systemCapabilities,omitempty"`
	UserCapabilities     map[string]string                 `json:"userCapabilities,omitempty"`
	Authorization        *taskagent.TaskAgentAuthorization `json:"authorization,omitempty"`
}

func (s *Server) wireAgent(a *agent, d agentDetail) agentJSON {
	t := agentJSON{
		ID:                a.id,
		Name:              a.name,
		Version:           a.version,
		OsDescription:     a.osDescription,
		Enabled:           a.enabled,
		Status:            s.agentStatus(a),
		ProvisioningState: a.provisioningState,
		AccessPoint:       a.accessPoint,
		MaxParallelism:    a.maxParallelism,
		CreatedOn:         a.createdOn,
		StatusChangedOn:   a.statusChangedOn,
	}
	if d.assigned && a.assigned != nil {
		t.AssignedRequest = s.wireRequest(a.assigned)
	}
	if d.lastCompleted && a.lastCompleted != nil {
		t.LastCompletedRequest = s.wireRequest(a.lastCompleted)
	}
	if d.caps {
		t.SystemCapabilities, t.UserCapabilities = copyMap(a.systemCaps), copyMap(a.userCaps)
	}
	if d.auth {
		cid := a.clientID
		t.Authorization = &taskagent.TaskAgentAuthorization{ClientId: &cid, PublicKey: a.pubKeyWire}
		if d.authURL != "" {
			t.Authorization.AuthorizationUrl = ptr(d.authURL)
		}
	}
	return t
}

func (s *Server) wireRequest(r *request) *taskagent.TaskAgentJobRequest {
	id := uint64(r.id)
	jid := r.jobID
	w := &taskagent.TaskAgentJobRequest{
		RequestId:   &id,
		JobId:       &jid,
		JobName:     ptr(r.spec.Name),
		PoolId:      ptr(r.pool.id),
		QueueTime:   tm(r.queueTime),
		AssignTime:  tm(r.assignTime),
		ReceiveTime: tm(r.receiveTime),
		FinishTime:  tm(r.finishTime),
		LockedUntil: tm(r.lockedUntil),
		PlanType:    ptr("Build"),
		Demands:     wireDemands(r.spec.Demands),
	}
	if r.result != "" {
		res := taskagent.TaskResult(r.result)
		w.Result = &res
	}
	if r.agent != nil {
		w.ReservedAgent = s.wireAgentRef(r.agent)
	}
	return w
}

func (s *Server) wirePool(p *pool) taskagent.TaskAgentPool {
	pt := taskagent.TaskAgentPoolTypeValues.Automation
	opt := taskagent.TaskAgentPoolOptionsValues.None
	return taskagent.TaskAgentPool{
		Id:            ptr(p.id),
		Name:          ptr(p.name),
		IsHosted:      ptr(false),
		IsLegacy:      ptr(false),
		PoolType:      &pt,
		Options:       &opt,
		Size:          ptr(len(p.agents)),
		AutoProvision: ptr(false),
		AutoSize:      ptr(true),
		AutoUpdate:    ptr(true),
		CreatedOn:     tm(p.createdOn),
	}
}

func ptr[T any](v T) *T { return &v }

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

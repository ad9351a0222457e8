package sim

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// What the scaler needs from the service: job requests with demands, assignment only to agents
// whose capabilities meet them, the organisation's parallel-job limit (resourceusage), and agents'
// system capabilities refreshed at every session start.

// LocResourceUsage is the location of GET _apis/distributedtask/resourceusage.
const LocResourceUsage = "eae1d376-a8b1-4475-9041-1dfdbe8f0143"

func init() {
	locations = append(locations, loc(LocResourceUsage, "distributedtask", "resourceusage", "_apis/{area}/{resource}"))
}

type scalingState struct {
	parallel int // private parallel jobs; 0: unlimited
}

// unlimitedParallel is what resourceusage reports when no limit was set.
const unlimitedParallel = 10000

// SetParallelJobs sets the organisation's self-hosted (Private) parallel jobs: no more requests
// than that run at once, whatever agents are idle ("Jobs beyond the limit wait in the queue").
// 0 means unlimited.
func (s *Server) SetParallelJobs(n int) {
	s.mu.Lock()
	s.scaling.parallel = n
	s.broadcast()
	s.mu.Unlock()
}

// runningLocked counts requests assigned and not finished, in every pool.
func (s *Server) runningLocked() int {
	n := 0
	for _, r := range s.requests {
		if r.agent != nil && r.finishTime.IsZero() {
			n++
		}
	}
	return n
}

// canAssign reports whether request r may go to agent a: the parallel-job limit leaves room and
// a's capabilities meet every demand. Call with s.mu held.
func (s *Server) canAssign(r *request, a *agent) bool {
	if s.scaling.parallel > 0 && s.runningLocked() >= s.scaling.parallel {
		return false
	}
	caps := map[string]string{}
	for k, v := range a.systemCaps {
		caps[strings.ToLower(k)] = v
	}
	for k, v := range a.userCaps { // user capabilities win over system ones of the same name
		caps[strings.ToLower(k)] = v
	}
	for _, d := range r.spec.Demands {
		if !demandMet(d, caps) {
			return false
		}
	}
	return true
}

// The demand grammar and rules of the service's DistributedTask WebApi: Demand.TryParse matches
// `^(?<name>\S+)(\s+\-(?<opcode>\S+)\s+(?<value>.*))?$`; no opcode is DemandExists (the name is
// present), "equals" is DemandEquals (value compared with OrdinalIgnoreCase), "gtVersion" is
// DemandMinimumVersion (satisfied when CompareVersion(demanded, capability) <= 0, versions parsed
// as System.Version after cutting a "-suffix"); see DemandMinimumVersion.cs as vendored in
// actions/runner src/Sdk/DTWebApi/WebApi. Capability names are case-insensitive.
var demandRE = regexp.MustCompile(`^(\S+)(\s+-(\S+)\s+(.*))?$`)

func demandMet(d string, caps map[string]string) bool {
	m := demandRE.FindStringSubmatch(strings.TrimSpace(d))
	if m == nil {
		return false
	}
	have, ok := caps[strings.ToLower(m[1])]
	switch {
	case m[2] == "":
		return ok
	case m[3] == "equals":
		return ok && strings.EqualFold(have, m[4])
	case m[3] == "gtVersion":
		want, ok1 := dotnetVersion(m[4])
		got, ok2 := dotnetVersion(have)
		if !ok || !ok1 {
			return false
		}
		if !ok2 {
			return false // the capability's version is "null": smaller than any version
		}
		return compareVersion(want, got) <= 0
	}
	return false
}

// dotnetVersion parses like System.Version.TryParse: 2 to 4 non-negative integers; unset parts
// are -1 (so 1.2 < 1.2.0, as .NET compares them).
func dotnetVersion(s string) ([4]int, bool) {
	v := [4]int{-1, -1, -1, -1}
	if i := strings.IndexByte(s, '-'); i > 0 {
		s = s[:i]
	}
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 || len(parts) > 4 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func compareVersion(a, b [4]int) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func wireDemands(ds []string) *[]interface{} {
	if len(ds) == 0 {
		return nil
	}
	out := make([]interface{}, len(ds))
	for i, d := range ds {
		out[i] = d
	}
	return &out
}

// sessionCapabilities replaces the agent's system capabilities with those the listener sends
// when it creates a session: the real listener scans them at every start ("Scanning for tool
// capabilities.": MessageListener.CreateSessionAsync builds TaskAgentSession with the
// CapabilitiesManager's result, in which EnvironmentCapabilitiesProvider reports the environment).
// Call with s.mu held.
func (s *Server) sessionCapabilities(a *agent, caps *map[string]string) {
	if caps != nil {
		a.systemCaps = copyMap(*caps)
	}
}

// handleResourceUsage serves GET _apis/distributedtask/resourceusage (parallelismTag=Private,
// poolIsHosted=false): the organisation's private parallel jobs and those in use.
func (s *Server) handleResourceUsage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !strings.EqualFold(q.Get("parallelismTag"), "Private") || strings.EqualFold(q.Get("poolIsHosted"), "true") {
		writeError(w, http.StatusBadRequest, "ArgumentException", "The simulator serves resourceusage for parallelismTag=Private, poolIsHosted=false only.")
		return
	}
	s.mu.Lock()
	total := s.scaling.parallel
	if total <= 0 {
		total = unlimitedParallel
	}
	used := s.runningLocked()
	running := []taskagent.TaskAgentJobRequest{}
	if strings.EqualFold(q.Get("includeRunningRequests"), "true") {
		for _, req := range s.requests {
			if req.agent != nil && req.finishTime.IsZero() {
				running = append(running, *s.wireRequest(req))
			}
		}
	}
	s.mu.Unlock()
	tag := "Private"
	hosted := false
	writeJSON(w, http.StatusOK, taskagent.ResourceUsage{
		ResourceLimit: &taskagent.ResourceLimit{ParallelismTag: &tag, IsHosted: &hosted, TotalCount: &total, TotalMinutes: ptr(0),
			IsPremium: ptr(false), FailedToReachAllProviders: ptr(false)},
		UsedCount:       &used,
		UsedMinutes:     ptr(0),
		RunningRequests: &running,
	})
}

// requeueUnreceived gives back a job request assigned to the agent that the agent never received
// (no receiveTime) when its session ends. A run-once listener keeps polling while its job runs and
// may be handed a second job as the first finishes; it skips that message (Agent.cs: "if
// (autoUpdateInProgress || runOnceJobReceived) skipMessageDeletion = true") and deletes its session
// on exit, so the service must queue the job again for run-once agents (and scale-set pools) to
// work at all. Call with s.mu held.
func (s *Server) requeueUnreceived(a *agent) {
	r := a.assigned
	if r == nil || !r.receiveTime.IsZero() || !r.finishTime.IsZero() {
		return
	}
	a.assigned = nil
	r.agent, r.agentName = nil, ""
	r.assignTime, r.lockedUntil = time.Time{}, time.Time{}
	kept := a.messages[:0]
	for _, m := range a.messages {
		if m.typ == MsgJobRequest && strings.Contains(m.body, `"requestId":`+strconv.FormatInt(r.id, 10)+`,`) {
			continue
		}
		kept = append(kept, m)
	}
	a.messages = kept
	i := 0
	for i < len(s.queue) && s.queue[i].id < r.id {
		i++
	}
	s.queue = append(s.queue[:i], append([]*request{r}, s.queue[i:]...)...)
	s.log.Debug("sim: unreceived request queued again", "request", r.id, "agent", a.name)
}

package sim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

func TestPoolsAndAgentLifecycle(t *testing.T) {
	s := startSim(t, Options{Pools: []string{"Default", "Linux"}})
	ctx := ctxT(t)
	c := taClient(t, s, patManage)

	name := "Linux"
	pt := taskagent.TaskAgentPoolTypeValues.Automation
	pools, err := c.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{PoolName: &name, PoolType: &pt})
	if err != nil {
		t.Fatal(err)
	}
	if len(*pools) != 1 || *(*pools)[0].Name != "Linux" || *(*pools)[0].Id != 2 {
		t.Fatalf("pools by name: %+v", *pools)
	}
	missing := "nope"
	pools, err = c.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{PoolName: &missing})
	if err != nil || len(*pools) != 0 {
		t.Fatalf("unknown pool: %v %v", pools, err)
	}

	keys := testKeys()
	poolID := 2
	a := addAgent(t, c, poolID, "agent-1", keys[0])
	if a.Id == nil || *a.Id == 0 || a.Authorization == nil || a.Authorization.ClientId == nil ||
		a.Authorization.AuthorizationUrl == nil || !strings.HasSuffix(*a.Authorization.AuthorizationUrl, "/_sim/oauth2/token") {
		t.Fatalf("add agent answer: %+v", a)
	}
	if *a.Status != taskagent.TaskAgentStatusValues.Offline || !*a.Enabled {
		t.Fatalf("new agent: status %v enabled %v", *a.Status, *a.Enabled)
	}

	_, err = c.AddAgent(ctx, taskagent.AddAgentArgs{PoolId: &poolID, Agent: newAgent("AGENT-1", keys[0])})
	wrapped(t, err, http.StatusConflict, "TaskAgentExistsException")

	agentName := "agent-1"
	list, err := c.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID, AgentName: &agentName})
	if err != nil || len(*list) != 1 || *(*list)[0].Id != *a.Id {
		t.Fatalf("list by name: %v %v", list, err)
	}
	if (*list)[0].StatusChangedOn == nil || (*list)[0].CreatedOn == nil {
		t.Fatalf("dates missing: %+v", (*list)[0])
	}

	r, err := c.ReplaceAgent(ctx, taskagent.ReplaceAgentArgs{PoolId: &poolID, AgentId: a.Id, Agent: newAgent("agent-1", keys[1])})
	if err != nil {
		t.Fatal(err)
	}
	if *r.Id != *a.Id || *r.Authorization.ClientId != *a.Authorization.ClientId {
		t.Fatalf("replace changed id or client id: %d %d", *r.Id, *a.Id)
	}
	if string(*r.Authorization.PublicKey.Modulus) != string(keys[1].N.Bytes()) {
		t.Fatal("replace did not store the new public key")
	}

	u, err := c.UpdateAgent(ctx, taskagent.UpdateAgentArgs{PoolId: &poolID, AgentId: a.Id,
		Agent: &taskagent.TaskAgent{Id: a.Id, Enabled: ptr(false)}})
	if err != nil || *u.Enabled {
		t.Fatalf("disable: %v %v", u, err)
	}
	if v, _ := s.Agent("Linux", "agent-1"); v.Enabled {
		t.Fatal("control view still enabled")
	}

	if err := c.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: &poolID, AgentId: a.Id}); err != nil {
		t.Fatal(err)
	}
	list, err = c.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID})
	if err != nil || len(*list) != 0 {
		t.Fatalf("after delete: %v %v", list, err)
	}
	err = c.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: &poolID, AgentId: a.Id})
	wrapped(t, err, http.StatusNotFound, "TaskAgentNotFoundException")
}

func TestAuth(t *testing.T) {
	s := startSim(t, Options{})
	ctx := ctxT(t)

	_, err := taskagent.NewClient(ctx, patConn(s, "wrong-pat"))
	wrapped(t, err, http.StatusUnauthorized, "UnauthorizedRequestException")

	ro := taClient(t, s, patRead)
	pools, err := ro.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{})
	if err != nil || len(*pools) != 1 {
		t.Fatalf("read token reading pools: %v %v", pools, err)
	}
	manage := taskagent.TaskAgentPoolActionFilterValues.Manage
	pools, err = ro.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{ActionFilter: &manage})
	if err != nil || len(*pools) != 0 {
		t.Fatalf("read token with actionFilter=manage: %v %v", pools, err)
	}
	pools, err = taClient(t, s, patManage).GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{ActionFilter: &manage})
	if err != nil || len(*pools) != 1 {
		t.Fatalf("manage token with actionFilter=manage: %v %v", pools, err)
	}
	poolID := 1
	_, err = ro.AddAgent(ctx, taskagent.AddAgentArgs{PoolId: &poolID, Agent: newAgent("a", testKeys()[0])})
	wrapped(t, err, http.StatusForbidden, "AccessDeniedException")

	// A revoked token stops working.
	s.RemoveToken(patRead)
	_, err = ro.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{})
	wrapped(t, err, http.StatusUnauthorized, "UnauthorizedRequestException")

	// A registered bearer token (e.g. an Entra token for a service principal) works like a PAT.
	if err := s.AddToken("entra-token", ScopeManage); err != nil {
		t.Fatal(err)
	}
	resp, err := send(ctx, bearerConn(s, "entra-token"), http.MethodGet, LocPools, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	log := s.RequestLog()
	kinds := map[string]bool{}
	for _, e := range log {
		kinds[e.Auth] = true
	}
	if !kinds["basic"] || !kinds["bearer"] {
		t.Fatalf("auth kinds in log: %v", kinds)
	}
}

func TestSessionJobFlow(t *testing.T) {
	s := startSim(t, Options{})
	ctx := ctxT(t)
	c := taClient(t, s, patManage)
	conn := patConn(s, patManage)
	poolID := 1
	a := addAgent(t, c, poolID, "worker", testKeys()[0])

	resp, err := createSession(ctx, conn, poolID, *a.Id)
	if err != nil {
		t.Fatal(err)
	}
	sess := decode[taskagent.TaskAgentSession](t, resp)
	if sess.SessionId == nil {
		t.Fatal("no session id")
	}
	if v, _ := s.Agent("", "worker"); v.Status != "online" || v.Version != "4.260.0" {
		t.Fatalf("after session: %+v", v)
	}
	_, err = createSession(ctx, conn, poolID, *a.Id)
	wrapped(t, err, http.StatusConflict, "TaskAgentSessionConflictException")

	reqID, err := s.QueueJob(JobSpec{Name: "build", Duration: 1500 * time.Millisecond, Result: "failed", Orphans: 2})
	if err != nil {
		t.Fatal(err)
	}
	resp, err = poll(ctx, conn, poolID, *sess.SessionId, 0)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("poll: %v %v", resp, err)
	}
	msg := decode[taskagent.TaskAgentMessage](t, resp)
	if *msg.MessageType != MsgJobRequest {
		t.Fatalf("message type %s", *msg.MessageType)
	}
	var body jobMessageBody
	if err := json.Unmarshal([]byte(*msg.Body), &body); err != nil {
		t.Fatal(err)
	}
	if body.RequestID != reqID || body.JobDisplayName != "build" || body.Sim.DurationMs != 1500 ||
		body.Sim.Result != "failed" || body.Sim.Orphans != 2 || body.LockToken == "" {
		t.Fatalf("job body: %+v", body)
	}

	list, err := c.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID, IncludeAssignedRequest: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	ar := (*list)[0].AssignedRequest
	if ar == nil || *ar.RequestId != uint64(reqID) || ar.AssignTime == nil || ar.ReservedAgent == nil || *ar.ReservedAgent.Name != "worker" {
		t.Fatalf("assigned request: %+v", ar)
	}
	list, _ = c.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: &poolID})
	if (*list)[0].AssignedRequest != nil {
		t.Fatal("assignedRequest without includeAssignedRequest")
	}

	err = c.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: &poolID, AgentId: a.Id})
	wrapped(t, err, http.StatusBadRequest, "AgentInUseException")
	if !strings.Contains(err.Error(), "The agent worker is running a job and cannot be deleted.") {
		t.Fatalf("message: %v", err)
	}

	// Delete the message, renew (receive) with a wrong then the right lock token, finish.
	resp, err = send(ctx, conn, http.MethodDelete, LocMessages, map[string]string{"poolId": "1", "messageId": itoa(int(*msg.MessageId))},
		url.Values{"sessionId": {sess.SessionId.String()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	route := map[string]string{"poolId": "1", "requestId": itoa(int(reqID))}
	rid := uint64(reqID)
	_, err = send(ctx, conn, http.MethodPatch, LocJobRequests, route, url.Values{"lockToken": {uuid.NewString()}},
		taskagent.TaskAgentJobRequest{RequestId: &rid})
	wrapped(t, err, http.StatusBadRequest, "TaskAgentJobTokenExpiredException")
	resp, err = send(ctx, conn, http.MethodPatch, LocJobRequests, route, url.Values{"lockToken": {body.LockToken}},
		taskagent.TaskAgentJobRequest{RequestId: &rid})
	if err != nil {
		t.Fatal(err)
	}
	renewed := decode[taskagent.TaskAgentJobRequest](t, resp)
	if renewed.ReceiveTime == nil || renewed.LockedUntil == nil || renewed.FinishTime != nil {
		t.Fatalf("renew: %+v", renewed)
	}
	res := taskagent.TaskResultValues.Failed
	resp, err = send(ctx, conn, http.MethodPatch, LocJobRequests, route, url.Values{"lockToken": {body.LockToken}},
		taskagent.TaskAgentJobRequest{RequestId: &rid, FinishTime: &azuredevops.Time{Time: time.Now()}, Result: &res})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rv, _ := s.Request(reqID)
	if rv.Result != "failed" || rv.FinishTime.IsZero() || rv.ReceiveTime.IsZero() || rv.AgentName != "worker" {
		t.Fatalf("request view: %+v", rv)
	}
	if v, _ := s.Agent("", "worker"); v.AssignedRequestID != 0 {
		t.Fatalf("still assigned: %+v", v)
	}

	// Job request listing for the agent.
	resp, err = send(ctx, conn, http.MethodGet, LocJobRequests, map[string]string{"poolId": "1"},
		url.Values{"agentId": {itoa(*a.Id)}, "completedRequestCount": {"5"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reqs := decode[collection[taskagent.TaskAgentJobRequest]](t, resp)
	if reqs.Count != 1 || *reqs.Value[0].Result != "failed" {
		t.Fatalf("job requests: %+v", reqs)
	}

	// Nothing more: the long poll ends with 204 after PollTimeout.
	start := time.Now()
	resp, err = poll(ctx, conn, poolID, *sess.SessionId, *msg.MessageId)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("empty poll: %v %v", resp, err)
	}
	resp.Body.Close()
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("poll returned after %v, want about PollTimeout", d)
	}

	// Delete the session: offline now; then delete the agent; a new session gets 404.
	resp, err = send(ctx, conn, http.MethodDelete, LocSessions, map[string]string{"poolId": "1", "sessionId": sess.SessionId.String()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v, _ := s.Agent("", "worker"); v.Status != "offline" || v.HasSession {
		t.Fatalf("after session delete: %+v", v)
	}
	_, err = poll(ctx, conn, poolID, *sess.SessionId, 0)
	wrapped(t, err, http.StatusNotFound, "TaskAgentSessionExpiredException")
	if err := c.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: &poolID, AgentId: a.Id}); err != nil {
		t.Fatal(err)
	}
	_, err = createSession(ctx, conn, poolID, *a.Id)
	wrapped(t, err, http.StatusNotFound, "TaskAgentNotFoundException")
}

func TestJobWakesLongPollAndRespectsEnabledAndTarget(t *testing.T) {
	s := startSim(t, Options{PollTimeout: time.Second})
	ctx := ctxT(t)
	c := taClient(t, s, patManage)
	conn := patConn(s, patManage)
	poolID := 1
	a1 := addAgent(t, c, poolID, "a1", testKeys()[0])
	a2 := addAgent(t, c, poolID, "a2", testKeys()[1])
	sid := func(id int) uuid.UUID {
		resp, err := createSession(ctx, conn, poolID, id)
		if err != nil {
			t.Fatal(err)
		}
		return *decode[taskagent.TaskAgentSession](t, resp).SessionId
	}
	s1, s2 := sid(*a1.Id), sid(*a2.Id)
	if err := s.SetAgentEnabled("Default", "a1", false); err != nil {
		t.Fatal(err)
	}
	// a2 may not take a job for a1; a1 is disabled: nothing is assigned.
	id, _ := s.QueueJob(JobSpec{Agent: "a1"})
	resp, err := poll(ctx, conn, poolID, s2, 0)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("a2 poll: status %d, want 204", resp.StatusCode)
	}
	if rv, _ := s.Request(id); rv.AgentName != "" {
		t.Fatalf("targeted job went to %s", rv.AgentName)
	}

	// A poll in progress wakes when the agent is enabled.
	done := make(chan *taskagent.TaskAgentMessage, 1)
	go func() {
		resp, err := poll(ctx, conn, poolID, s1, 0)
		if err != nil || resp.StatusCode != http.StatusOK {
			done <- nil
			return
		}
		m := decode[taskagent.TaskAgentMessage](t, resp)
		done <- &m
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := s.SetAgentEnabled("Default", "a1", true); err != nil {
		t.Fatal(err)
	}
	m := <-done
	if m == nil || *m.MessageType != MsgJobRequest {
		t.Fatalf("a1 got %+v", m)
	}
	if time.Since(start) > time.Second {
		t.Fatal("long poll was not woken")
	}
	if rv, _ := s.Request(id); rv.AgentName != "a1" || rv.AssignTime.IsZero() {
		t.Fatalf("request: %+v", rv)
	}
}

func TestMessagesCancelUpdateScript(t *testing.T) {
	s := startSim(t, Options{})
	ctx := ctxT(t)
	c := taClient(t, s, patManage)
	conn := patConn(s, patManage)
	a := addAgent(t, c, 1, "m", testKeys()[0])
	resp, err := createSession(ctx, conn, 1, *a.Id)
	if err != nil {
		t.Fatal(err)
	}
	sid := *decode[taskagent.TaskAgentSession](t, resp).SessionId

	queued, _ := s.QueueJob(JobSpec{Pool: "Default", Agent: "someone-else"})
	if err := s.CancelJob(queued); err != nil {
		t.Fatal(err)
	}
	if rv, _ := s.Request(queued); rv.Result != "canceled" {
		t.Fatalf("queued cancel: %+v", rv)
	}

	if err := s.RequestUpdate("m", "4.261.0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Script("m", map[string]any{"exit": 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.RequestUpdate("ghost", "4.261.0"); err == nil {
		t.Fatal("update of unknown agent accepted")
	}
	var last uint64
	next := func() taskagent.TaskAgentMessage {
		t.Helper()
		resp, err := poll(ctx, conn, 1, sid, last)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("poll: %v %v", resp, err)
		}
		m := decode[taskagent.TaskAgentMessage](t, resp)
		last = *m.MessageId
		return m
	}
	m := next()
	if *m.MessageType != MsgAgentRefresh || *m.Body != `{"agentId":`+itoa(*a.Id)+`,"targetVersion":"4.261.0"}` {
		t.Fatalf("refresh: %s %s", *m.MessageType, *m.Body)
	}
	m = next()
	if *m.MessageType != MsgSimScript || *m.Body != `{"exit":2}` {
		t.Fatalf("script: %s %s", *m.MessageType, *m.Body)
	}
	running, _ := s.QueueJob(JobSpec{})
	m = next()
	if *m.MessageType != MsgJobRequest {
		t.Fatalf("job: %s", *m.MessageType)
	}
	if err := s.CancelJob(running); err != nil {
		t.Fatal(err)
	}
	m = next()
	var jb jobMessageBody
	rv, _ := s.Request(running)
	_ = json.Unmarshal([]byte(*m.Body), &jb)
	if *m.MessageType != MsgJobCancel || !strings.Contains(*m.Body, rv.JobID) {
		t.Fatalf("cancel: %s %s", *m.MessageType, *m.Body)
	}
}

func TestOfflineAfterSilenceAndAbandon(t *testing.T) {
	s := startSim(t, Options{OfflineAfter: 300 * time.Millisecond, AbandonAfter: 200 * time.Millisecond, PollTimeout: 50 * time.Millisecond})
	ctx := ctxT(t)
	c := taClient(t, s, patManage)
	conn := patConn(s, patManage)
	a := addAgent(t, c, 1, "k", testKeys()[0])
	resp, err := createSession(ctx, conn, 1, *a.Id)
	if err != nil {
		t.Fatal(err)
	}
	sid := *decode[taskagent.TaskAgentSession](t, resp).SessionId
	reqID, _ := s.QueueJob(JobSpec{})
	resp, err = poll(ctx, conn, 1, sid, 0)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lastPoll := time.Now()
	v, _ := s.Agent("", "k")
	if v.Status != "online" || v.AssignedRequestID != reqID {
		t.Fatalf("online: %+v", v)
	}
	// Like a SIGKILL: no more polls. Offline at last poll + OfflineAfter.
	v, err = s.WaitAgent(ctx, "Default", "k", func(a AgentView) bool { return a.Status == "offline" })
	if err != nil {
		t.Fatal(err)
	}
	want := lastPoll.Add(300 * time.Millisecond)
	if d := v.StatusChangedOn.Sub(want); d < -100*time.Millisecond || d > 100*time.Millisecond {
		t.Fatalf("statusChangedOn %v, want about %v", v.StatusChangedOn, want)
	}
	// The lingering session conflicts until SessionExpiry (= OfflineAfter) has passed: here it has.
	rv, err := s.WaitRequest(ctx, reqID, func(r RequestView) bool { return r.Result != "" })
	if err != nil || rv.Result != "abandoned" {
		t.Fatalf("abandon: %+v %v", rv, err)
	}
	if err := c.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: ptr(1), AgentId: a.Id}); err != nil {
		t.Fatalf("delete after abandon: %v", err)
	}
	if _, err := s.WaitAgent(ctx, "", "k", func(a AgentView) bool { return a.ID == 0 }); err != nil {
		t.Fatal(err)
	}
}

func TestPackagesAndDownload(t *testing.T) {
	s := startSim(t, Options{})
	ctx := ctxT(t)
	dir := t.TempDir()
	content := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, v := range []string{"4.258.1", "4.261.0", "3.248.0"} {
		if err := s.AddPackage(PackageSpec{Version: v, Platform: "linux-x64", FilePath: mk("x64-" + v + ".tar.gz")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddPackage(PackageSpec{Version: "4.262.0", Platform: "linux-musl-x64", FilePath: mk("musl.tar.gz"), SHA256: "deadbeef"}); err != nil {
		t.Fatal(err)
	}
	conn := patConn(s, patManage)
	resp, err := send(ctx, conn, http.MethodGet, LocPackages, map[string]string{"packageType": "agent", "platform": "linux-x64"},
		url.Values{"$top": {"1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := decode[collection[taskagent.PackageMetadata]](t, resp)
	if got.Count != 1 || *got.Value[0].Version.Minor != 261 {
		t.Fatalf("top 1: %+v", got)
	}
	p := got.Value[0]
	if *p.HashValue == "" || *p.Filename != "x64-4.261.0.tar.gz" || !strings.HasPrefix(*p.DownloadUrl, s.URL()+"/_sim/download/") || p.CreatedOn == nil {
		t.Fatalf("metadata: %+v", p)
	}

	// The start.sh style: platform as a query parameter; newest first.
	resp, err = send(ctx, conn, http.MethodGet, LocPackages, map[string]string{"packageType": "agent"},
		url.Values{"platform": {"linux-x64"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got = decode[collection[taskagent.PackageMetadata]](t, resp)
	var vers []int
	for _, v := range got.Value {
		vers = append(vers, *v.Version.Major*1000+*v.Version.Minor)
	}
	if len(vers) != 3 || vers[0] != 4261 || vers[1] != 4258 || vers[2] != 3248 {
		t.Fatalf("order: %v", vers)
	}
	// A lying hash is passed through as claimed.
	resp, err = send(ctx, conn, http.MethodGet, LocPackages, map[string]string{"packageType": "agent", "platform": "linux-musl-x64", "version": "4.262.0"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The fixed-version route answers one PackageMetadata, not a collection (GetPackageAsync).
	if one := decode[taskagent.PackageMetadata](t, resp); one.HashValue == nil || *one.HashValue != "deadbeef" {
		t.Fatalf("fixed version: %+v", one)
	}

	// Download, whole and with Range, without credentials.
	dl, err := http.Get(*p.DownloadUrl)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(dl.Body)
	dl.Body.Close()
	if dl.StatusCode != 200 || string(all) != string(content) {
		t.Fatalf("download: %d %q", dl.StatusCode, all)
	}
	req, _ := http.NewRequest(http.MethodGet, *p.DownloadUrl, nil)
	req.Header.Set("Range", "bytes=10-")
	dl, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(dl.Body)
	dl.Body.Close()
	if dl.StatusCode != http.StatusPartialContent || string(part) != string(content[10:]) {
		t.Fatalf("range: %d %q", dl.StatusCode, part)
	}
}

func TestFaultsAndRateLimit(t *testing.T) {
	s := startSim(t, Options{})
	ctx := ctxT(t)
	c := taClient(t, s, patManage)

	if _, err := s.Fault(FaultSpec{Method: "GET", PathRegexp: `/distributedtask/pools$`, Status: 503, Count: 2}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		_, err := c.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{})
		wrapped(t, err, http.StatusServiceUnavailable, "SimulatedFaultException")
	}
	if _, err := c.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{}); err != nil {
		t.Fatalf("after count: %v", err)
	}

	// 429 with Retry-After, seen with a plain client.
	if _, err := s.Fault(FaultSpec{PathRegexp: `/pools/1/agents`, Status: 429, RetryAfter: 1500 * time.Millisecond, Count: 1}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, s.OrgURL()+"/_apis/distributedtask/pools/1/agents", nil)
	req.SetBasicAuth("x", patManage)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("429: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// Dropped connection.
	if _, err := s.Fault(FaultSpec{Method: "GET", PathRegexp: `/pools/1$`, Drop: true, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAgentPool(ctx, taskagent.GetAgentPoolArgs{PoolId: ptr(1)}); err == nil {
		t.Fatal("dropped connection gave no error")
	}
	if _, err := c.GetAgentPool(ctx, taskagent.GetAgentPoolArgs{PoolId: ptr(1)}); err != nil {
		t.Fatalf("after drop: %v", err)
	}

	// Forced AgentInUse on delete.
	a := addAgent(t, c, 1, "busy", testKeys()[0])
	if _, err := s.Fault(FaultSpec{Method: "DELETE", PathRegexp: `/agents/`, Status: 400, Body: AgentInUseBody("busy"), Count: 1}); err != nil {
		t.Fatal(err)
	}
	err = c.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: ptr(1), AgentId: a.Id})
	wrapped(t, err, http.StatusBadRequest, "AgentInUseException")

	// Delay-only fault.
	if _, err := s.Fault(FaultSpec{PathRegexp: `/pools/1$`, Delay: 200 * time.Millisecond, Count: 1}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.GetAgentPool(ctx, taskagent.GetAgentPoolArgs{PoolId: ptr(1)}); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Fatal("delay fault did not delay")
	}

	// Rate limit: 2 per window, the third gets 429 + Retry-After.
	s.ClearFaults()
	if err := s.RateLimit(RateLimitSpec{Method: "GET", PathRegexp: `/agents$`, N: 2, Window: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := c.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: ptr(1)}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: ptr(1)})
	wrapped(t, err, http.StatusTooManyRequests, "RequestBlockedException")

	var faulted, dropped int
	for _, e := range s.RequestLog() {
		if e.Fault {
			faulted++
			if e.Status == 0 {
				dropped++
			}
		}
	}
	if faulted != 6 || dropped != 1 { // the delay-only fault passes the request on
		t.Fatalf("log: %d faulted, %d dropped", faulted, dropped)
	}
}

func TestTLS(t *testing.T) {
	s := startSim(t, Options{TLS: true})
	ctx := ctxT(t)
	if !strings.HasPrefix(s.OrgURL(), "https://127.0.0.1:") || len(s.CACertPEM()) == 0 {
		t.Fatalf("url %s, pem %d bytes", s.OrgURL(), len(s.CACertPEM()))
	}
	c := taClient(t, s, patManage)
	if _, err := c.GetAgentPools(ctx, taskagent.GetAgentPoolsArgs{}); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.URL() + "/_sim/health"); err == nil {
		t.Fatal("untrusted client connected")
	}
	resp, err := s.HTTPClient().Get(strings.Replace(s.URL(), "127.0.0.1", "localhost", 1) + "/_sim/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func signAssertion(t *testing.T, key any, clientID, aud string, exp time.Duration) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer: clientID, Subject: clientID, Audience: jwt.ClaimStrings{aud},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(exp)), ID: uuid.NewString(),
	})
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func oauthToken(t *testing.T, authURL, assertion string) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(authURL, url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {clientAssertionType},
		"client_assertion":      {assertion},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestAgentOAuth(t *testing.T) {
	s := startSim(t, Options{})
	ctx := ctxT(t)
	c := taClient(t, s, patManage)
	keys := testKeys()
	a := addAgent(t, c, 1, "oauth", keys[0])
	other := addAgent(t, c, 1, "other", keys[1])
	cid := a.Authorization.ClientId.String()
	authURL := *a.Authorization.AuthorizationUrl

	code, out := oauthToken(t, authURL, signAssertion(t, keys[1], cid, authURL, 5*time.Minute))
	if code != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Fatalf("wrong key: %d %v", code, out)
	}
	code, out = oauthToken(t, authURL, signAssertion(t, keys[0], cid, authURL, -5*time.Minute))
	if code != http.StatusUnauthorized {
		t.Fatalf("expired assertion: %d %v", code, out)
	}
	code, out = oauthToken(t, authURL, signAssertion(t, keys[0], cid, authURL, 5*time.Minute))
	if code != http.StatusOK || out["token_type"] != "bearer" || out["expires_in"] != float64(3600) {
		t.Fatalf("token: %d %v", code, out)
	}
	access := out["access_token"].(string)
	conn := bearerConn(s, access)

	// The agent's own session routes work; another agent's and agent writes do not.
	resp, err := createSession(ctx, conn, 1, *a.Id)
	if err != nil {
		t.Fatal(err)
	}
	sid := *decode[taskagent.TaskAgentSession](t, resp).SessionId
	_, err = createSession(ctx, conn, 1, *other.Id)
	wrapped(t, err, http.StatusForbidden, "AccessDeniedException")
	ac, err := taskagent.NewClient(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ac.AddAgent(ctx, taskagent.AddAgentArgs{PoolId: ptr(1), Agent: newAgent("sneaky", keys[0])})
	wrapped(t, err, http.StatusForbidden, "AccessDeniedException")
	resp, err = poll(ctx, conn, 1, sid, 0)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// --replace from another container: the old instance's token and key stop working.
	if _, err := c.ReplaceAgent(ctx, taskagent.ReplaceAgentArgs{PoolId: ptr(1), AgentId: a.Id, Agent: newAgent("oauth", keys[1])}); err != nil {
		t.Fatal(err)
	}
	_, err = poll(ctx, conn, 1, sid, 0)
	wrapped(t, err, http.StatusUnauthorized, "UnauthorizedRequestException")
	code, _ = oauthToken(t, authURL, signAssertion(t, keys[0], cid, authURL, 5*time.Minute))
	if code != http.StatusUnauthorized {
		t.Fatalf("old key after replace: %d", code)
	}
	code, _ = oauthToken(t, authURL, signAssertion(t, keys[1], cid, authURL, 5*time.Minute))
	if code != http.StatusOK {
		t.Fatalf("new key after replace: %d", code)
	}
}

func TestControlHTTP(t *testing.T) {
	s := startSim(t, Options{})
	ctx := ctxT(t)
	cc := NewControlClient(s.OrgURL(), nil)
	id, err := cc.AddPool(ctx, "Linux")
	if err != nil || id != 2 {
		t.Fatalf("add pool: %d %v", id, err)
	}
	if err := cc.AddToken(ctx, "tok", "manage"); err != nil {
		t.Fatal(err)
	}
	if err := cc.AddToken(ctx, "tok", "admin"); err == nil {
		t.Fatal("bad scope accepted")
	}
	if err := cc.SeedAgents(ctx, SeedSpec{Pool: "Linux", N: 3, Status: "offline", StatusChangedOn: time.Now().Add(-2 * time.Hour), NamePrefix: "ghost-"}); err != nil {
		t.Fatal(err)
	}
	agents, err := cc.Agents(ctx, "Linux")
	if err != nil || len(agents) != 3 || agents[2].Name != "ghost-2" || agents[0].Status != "offline" ||
		time.Since(agents[0].StatusChangedOn) < time.Hour {
		t.Fatalf("agents: %+v %v", agents, err)
	}
	rid, err := cc.QueueJob(ctx, JobSpec{Pool: "Linux", Name: "j", Duration: 2 * time.Second, IgnoreCancel: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	spec := s.reqByID[rid].spec
	s.mu.Unlock()
	if spec.Duration != 2*time.Second || spec.IgnoreCancel != time.Second {
		t.Fatalf("durations over HTTP: %+v", spec)
	}
	if _, err := cc.QueueJob(ctx, JobSpec{Pool: "Nope"}); err == nil {
		t.Fatal("unknown pool accepted")
	}
	reqs, err := cc.Requests(ctx)
	if err != nil || len(reqs) != 1 || reqs[0].Name != "j" {
		t.Fatalf("requests: %+v %v", reqs, err)
	}
	if err := cc.CancelJob(ctx, rid); err != nil {
		t.Fatal(err)
	}
	fid, err := cc.Fault(ctx, FaultSpec{Status: 500, PathRegexp: "/connectionData", RetryAfter: time.Second})
	if err != nil || fid == 0 {
		t.Fatalf("fault: %d %v", fid, err)
	}
	s.faultMu.Lock()
	ra := s.faults[0].spec.RetryAfter
	s.faultMu.Unlock()
	if ra != time.Second {
		t.Fatalf("retryAfter over HTTP: %v", ra)
	}
	if err := cc.ClearFaults(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cc.RateLimit(ctx, RateLimitSpec{N: 1, Window: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := cc.ClearRateLimits(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cc.DeleteAgent(ctx, "Linux", "ghost-1"); err != nil {
		t.Fatal(err)
	}
	if err := cc.DeleteAgent(ctx, "Linux", "ghost-1"); err == nil {
		t.Fatal("second delete succeeded")
	}
	if err := cc.Script(ctx, "ghost-0", map[string]any{"hang": true}); err != nil {
		t.Fatal(err)
	}
	if err := cc.RequestUpdate(ctx, "ghost-0", "4.262.0"); err != nil {
		t.Fatal(err)
	}
	log, err := cc.RequestLog(ctx)
	if err != nil || len(log) != 0 {
		t.Fatalf("control calls must not be logged: %v %v", log, err)
	}
}

func TestSeededPoolAtScale(t *testing.T) {
	s := startSim(t, Options{})
	ctx := ctxT(t)
	old := time.Now().Add(-3 * time.Hour)
	if err := s.SeedAgents("Default", 8000, "offline", old, "ecs-"); err != nil {
		t.Fatal(err)
	}
	if err := s.SeedAgents("Default", 2000, "online", time.Now(), "live-"); err != nil {
		t.Fatal(err)
	}
	c := taClient(t, s, patManage)
	start := time.Now()
	list, err := c.GetAgents(ctx, taskagent.GetAgentsArgs{PoolId: ptr(1)})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if len(*list) != 10000 {
		t.Fatalf("listed %d agents", len(*list))
	}
	var offline int
	for _, a := range *list {
		if *a.Status == "offline" {
			offline++
			if !a.StatusChangedOn.Time.Equal(old.UTC().Round(0)) && a.StatusChangedOn.Time.Sub(old).Abs() > time.Millisecond {
				t.Fatalf("statusChangedOn %v want %v", a.StatusChangedOn.Time, old)
			}
		}
	}
	if offline != 8000 {
		t.Fatalf("offline %d", offline)
	}
	// How fast is for the benchmarks (bench/); a timed assertion here fails on a busy machine.
	t.Logf("listed 10,000 agents in %v", took)

	// Deleting many is fast too.
	start = time.Now()
	for _, a := range (*list)[:500] {
		if err := c.DeleteAgent(ctx, taskagent.DeleteAgentArgs{PoolId: ptr(1), AgentId: a.Id}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("deleted 500 agents in %v", time.Since(start))
	if n := len(s.Agents("Default")); n != 9500 {
		t.Fatalf("left %d", n)
	}
}

func TestConnectionDataAndLocations(t *testing.T) {
	s := startSim(t, Options{Org: "Acme"})
	ctx := ctxT(t)
	conn := patConn(s, patManage) // the SDK lower-cases the org
	resp, err := send(ctx, conn, http.MethodGet, LocConnectionData, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cd := decode[map[string]any](t, resp)
	if cd["authenticatedUser"] == nil || cd["instanceId"] == nil || cd["locationServiceData"] == nil {
		t.Fatalf("connectionData: %v", cd)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodOptions, s.OrgURL()+"/_apis", nil)
	req.SetBasicAuth("", patManage)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	locs := decode[collection[azuredevops.ApiResourceLocation]](t, r2)
	if locs.Count != len(locations) {
		t.Fatalf("locations: %d", locs.Count)
	}
}

func TestLingeringSessionAndDeletedAgent(t *testing.T) {
	s := startSim(t, Options{OfflineAfter: 200 * time.Millisecond, PollTimeout: 2 * time.Second})
	ctx := ctxT(t)
	c := taClient(t, s, patManage)
	conn := patConn(s, patManage)
	a := addAgent(t, c, 1, "l", testKeys()[0])
	resp, err := createSession(ctx, conn, 1, *a.Id)
	if err != nil {
		t.Fatal(err)
	}
	old := *decode[taskagent.TaskAgentSession](t, resp).SessionId
	// The killed listener's session lingers: a restart right away conflicts ...
	_, err = createSession(ctx, conn, 1, *a.Id)
	wrapped(t, err, http.StatusConflict, "TaskAgentSessionConflictException")
	// ... and succeeds once the session expired; the old session is then unknown.
	time.Sleep(250 * time.Millisecond)
	resp, err = createSession(ctx, conn, 1, *a.Id)
	if err != nil {
		t.Fatal(err)
	}
	sid := *decode[taskagent.TaskAgentSession](t, resp).SessionId
	_, err = poll(ctx, conn, 1, old, 0)
	wrapped(t, err, http.StatusNotFound, "TaskAgentSessionExpiredException")

	// Deleting the agent on the server ends a poll in progress with TaskAgentNotFoundException.
	errc := make(chan error, 1)
	go func() {
		resp, err := poll(ctx, conn, 1, sid, 0)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := s.DeleteAgent("Default", "l"); err != nil {
		t.Fatal(err)
	}
	wrapped(t, <-errc, http.StatusNotFound, "TaskAgentNotFoundException")
	_, err = poll(ctx, conn, 1, sid, 0)
	wrapped(t, err, http.StatusNotFound, "TaskAgentNotFoundException")
}

func TestTruncatedDownload(t *testing.T) {
	s := startSim(t, Options{})
	p := filepath.Join(t.TempDir(), "agent.tar.gz")
	content := strings.Repeat("x", 100000)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPackage(PackageSpec{Version: "4.261.0", Platform: "linux-x64", FilePath: p}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fault(FaultSpec{PathRegexp: "^/_sim/download/", TruncateAfter: 4096, Count: 1}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL() + "/_sim/download/agent.tar.gz")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || len(got) != 4096 {
		t.Fatalf("truncated read: %d bytes, err %v", len(got), err)
	}
	// Resume with Range.
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/_sim/download/agent.tar.gz", nil)
	req.Header.Set("Range", "bytes=4096-")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || string(got)+string(rest) != content {
		t.Fatalf("resume: %d %d bytes %v", resp.StatusCode, len(rest), err)
	}
	log := s.RequestLog()
	if len(log) != 2 || !log[0].Fault || log[0].Auth != "none" || log[1].Status != http.StatusPartialContent {
		t.Fatalf("log: %+v", log)
	}
}

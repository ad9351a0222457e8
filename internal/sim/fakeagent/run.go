package fakeagent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Lines the real listener prints (en-US strings.json), reused by tests.
const (
	MsgNotConfigured   = "Agent is not configured."
	MsgMissingAgent    = "The agent no longer exists on the server. Please reconfigure the agent."
	MsgSessionExist    = "A session for this agent already exists."
	MsgSessionStop     = "Stop retry on SessionConflictException after retried for %s seconds."
	MsgListening       = "Listening for Jobs"
	MsgUpdateExit      = "Agent will exit shortly for update, should back online within 10 seconds."
	MsgTokenRevoked    = "Agent OAuth token has been revoked. Unable to pull message."
	MsgScanning        = "Scanning for tool capabilities."
	MsgConnecting      = "Connecting to the server."
	MsgSettingsSaved   = "Settings Saved."
	MsgAlreadyConfig   = "Cannot configure the agent because it is already configured."
	MsgNameTaken       = "Pool %s already contains an agent with name %s."
	MsgPoolNotFound    = "Agent pool not found: '%s'"
	MsgJobCompletedFmt = "Job %s completed with result: %s"
	MsgRunningJobFmt   = "Running job: %s"
)

// Message types the fake listener understands.
const (
	MsgTypeJobRequest   = "PipelineAgentJobRequest"
	MsgTypeCancellation = "JobCancellation"
	MsgTypeRefresh      = "AgentRefresh"
	MsgTypeSimScript    = "SimScript"
)

func envDuration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return d
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 { // bare number = seconds
		return time.Duration(n) * time.Second
	}
	return def
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// JobBody is the body of a PipelineAgentJobRequest message from the simulator.
type JobBody struct {
	RequestID      int64   `json:"requestId"`
	JobID          string  `json:"jobId"`
	JobDisplayName string  `json:"jobDisplayName"`
	LockToken      string  `json:"lockToken"`
	Sim            JobSpec `json:"sim"`
}

// JobSpec is the simulator's description of what the fake job does.
type JobSpec struct {
	DurationMs int64  `json:"durationMs"`
	Result     string `json:"result"`
	Orphans    int    `json:"orphans"`
	// IgnoreCancelMs is how long the step takes to end after the worker's SIGINT: 0 (default) never,
	// so the worker's SIGINT and SIGTERM timeouts (7.5 s + 2.5 s) run out; < 0 at once. See cancelTime.
	IgnoreCancelMs int64 `json:"ignoreCancelMs"`
	// SigintTimeoutMs and SigtermTimeoutMs shorten the worker's PROCESS_SIGINT_TIMEOUT and
	// PROCESS_SIGTERM_TIMEOUT for this job (test knob; < 0 means 0).
	SigintTimeoutMs  int64 `json:"sigintTimeoutMs,omitempty"`
	SigtermTimeoutMs int64 `json:"sigtermTimeoutMs,omitempty"`
	// FailFirstRenew makes the listener's first renewal of the job request fail as if the server
	// no longer knew the request (TaskAgentJobNotFoundException): JobDispatcher.RunAsync then returns
	// after "Running job" without starting a worker or printing "completed".
	FailFirstRenew bool `json:"failFirstRenew,omitempty"`
	OrphanSeconds  int  `json:"orphanSeconds,omitempty"`
}

type jobResult struct {
	job    *runningJob
	result string // succeeded | failed | canceled
}

type runningJob struct {
	body       JobBody
	cmd        *exec.Cmd
	pipe       *os.File
	cancelOnce sync.Once
	shutdown   bool // canceled because the agent is stopping
}

func (j *runningJob) cancel(shutdown bool) {
	j.cancelOnce.Do(func() {
		j.shutdown = shutdown
		msg := "cancel\n"
		if shutdown {
			msg = "shutdown\n"
		}
		j.pipe.WriteString(msg)
	})
}

type listener struct {
	cmd      *command
	root     *agentRoot
	out      *output
	settings AgentSettings
	srv      *agentServer
	once     bool
	startup  string

	mu        sync.Mutex
	sessionID string

	stopCh   chan struct{} // closed on the first SIGINT/SIGQUIT/SIGTERM
	jobDone  chan jobResult
	job      *runningJob
	pending  string // target version of a refresh that waits for the running job
	stopping bool

	stopPoll func() // cancels the poller and waits for it to return
}

func (l *listener) session() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessionID
}

func (l *listener) setSession(id string) {
	l.mu.Lock()
	l.sessionID = id
	l.mu.Unlock()
}

func run(cmd *command, root *agentRoot, out *output) int {
	if !root.configured() {
		out.sayErr("AgentIsNotConfigured") // Agent.ExecuteCommand
		return ExitTerminatedError
	}
	settings, err := root.loadAgent()
	if err != nil {
		// A .agent that does not parse is an unhandled exception: Program.cs's catch-all, exit 2.
		out.sayErr("ErrorOccurred", err.Error())
		return ExitRetryableError
	}
	l := &listener{
		cmd: cmd, root: root, out: out, settings: settings,
		once:    cmd.flag("once"),
		startup: strings.ToLower(cmd.value("startuptype")),
		stopCh:  make(chan struct{}),
		jobDone: make(chan jobResult, 1),
	}
	l.handleSignals()

	out.say("ScanToolCapabilities") // Agent.RunAsync
	out.say("ConnectToServer")      // MessageListener.CreateSessionAsync
	if code, done := l.scriptedRun(); done {
		return code
	}
	// MessageListener.CreateSessionAsync calls CredentialManager.LoadCredentials outside its retry
	// loop: a missing .credentials throws "Credentials not stored.  Must reconfigure." and a
	// missing or unreadable .credentials_rsaparams (RSAFileKeyManager.GetKey) throws too; both end
	// in Program.cs's catch-all with exit 2.
	creds, key, err := root.loadCredentials()
	if err != nil {
		out.sayErr("ErrorOccurred", err.Error())
		return ExitRetryableError
	}
	certs := root.loadCerts()
	tlsCfg, err := tlsConfig(root, certs.CACert, certs.SkipServerCertValidation)
	if err != nil {
		out.sayErr("ErrorOccurred", err.Error())
		return ExitTerminatedError
	}
	hc := httpClient(tlsCfg, 100*time.Second)
	if p := proxyFor(root); p != nil {
		out.tracef("Config proxy at: %s.", p.Redacted())
		hc.Transport.(*http.Transport).Proxy = http.ProxyURL(p)
	}
	l.srv = &agentServer{
		url: settings.ServerURL, poolID: settings.PoolID, tls: tlsCfg, hc: hc,
		auth: &oauth{hc: hc, clientID: creds.Data["clientId"], tokenURL: creds.Data["authorizationUrl"], key: key},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-l.stopCh
		cancel()
	}()
	if code := l.createSession(ctx); code >= 0 {
		return code
	}
	out.say("ListenForJobs", time.Now()) // Agent.RunAsync
	return l.loop(ctx)
}

// handleSignals implements reference section 4: SIGINT and SIGQUIT start the graceful shutdown, a
// second signal changes nothing; SIGTERM does the same but exits hard after the unload timeout; in
// "net10" mode SIGTERM has no handler at all and kills the process.
func (l *listener) handleSignals() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGQUIT)
	if !strings.EqualFold(os.Getenv(EnvNet10), "true") {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	go func() {
		first := true
		for s := range sigs {
			l.out.tracef("received signal %v", s)
			if !first {
				continue
			}
			first = false
			if s == syscall.SIGTERM {
				capDur := envDuration(EnvSigtermCap, 30*time.Second)
				go func() {
					time.Sleep(capDur)
					l.out.tracef("unload timeout of %v reached, exiting", capDur)
					os.Exit(128 + int(syscall.SIGTERM))
				}()
			}
			close(l.stopCh)
		}
	}()
}

// scriptedRun applies FAKE_AGENT_RUN_EXITS for this run.
func (l *listener) scriptedRun() (int, bool) {
	list := os.Getenv(EnvRunExits)
	if list == "" {
		return 0, false
	}
	entries := strings.Split(list, ",")
	p := l.root.path(FileRuns)
	n := 0
	if b, err := os.ReadFile(p); err == nil {
		n, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if n >= len(entries) {
		return 0, false
	}
	os.WriteFile(p, []byte(strconv.Itoa(n+1)+"\n"), 0o644)
	e := strings.ToLower(strings.TrimSpace(entries[n]))
	l.out.tracef("%s entry %d: %q", EnvRunExits, n, e)
	switch e {
	case "", "run":
		return 0, false
	case "hang":
		l.hang()
	case "crash", "kill":
		crash("kill")
	case "segv":
		crash("segv")
	}
	code, err := strconv.Atoi(e)
	if err != nil {
		l.out.errorf("An error occurred: bad %s entry %q", EnvRunExits, e)
		return ExitRetryableError, true
	}
	l.out.errorf("An error occurred: scripted exit %d", code)
	return code, true
}

// abortJob cancels a running job, waits for its worker and reports it, before an exit.
func (l *listener) abortJob() {
	if l.job == nil {
		return
	}
	l.job.cancel(true)
	l.complete(<-l.jobDone)
	l.job = nil
}

// hang stops doing anything (no more polls, so the agent goes offline) and ignores the stop
// signals: only SIGKILL ends it.
func (l *listener) hang() {
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM)
	if l.stopPoll != nil {
		l.stopPoll()
	}
	l.out.tracef("hanging")
	for {
		time.Sleep(time.Hour)
	}
}

func (l *listener) createSession(ctx context.Context) int {
	window := envDuration(EnvSessionRetry, 240*time.Second)
	interval := min(max(window/8, 200*time.Millisecond), 30*time.Second)
	interval = envDuration(EnvSessionRetryInterval, interval)
	host, _ := os.Hostname()
	if host == "" {
		host = "AGENT"
	}
	body := sessionBody{
		OwnerName: host,
		Agent: sessionAgent{
			ID: l.settings.AgentID, Name: l.settings.AgentName, Version: l.root.version, OsDescription: osDescription(),
		},
		SystemCapabilities: systemCapabilities(l.settings.AgentName, l.root.version), // capabilities.go
	}
	conflicts := 0
	erroring := false
	for {
		if ctx.Err() != nil {
			return ExitSuccess // stopped while connecting
		}
		id, err := l.srv.createSession(ctx, body)
		if err == nil {
			l.setSession(id)
			if erroring {
				l.out.say("QueueConnected", time.Now())
			}
			return -1
		}
		if ctx.Err() != nil {
			return ExitSuccess
		}
		l.out.tracef("create session: %v", err)
		st, key := statusOf(err), typeKeyOf(err)
		var te *tokenError
		switch {
		case key == "TaskAgentNotFoundException" || (st == http.StatusNotFound && key == ""):
			l.out.sayErr("MissingAgent") // MessageListener.IsSessionCreationExceptionRetriable
			l.out.sayErr("SessionCreateFailed", describe(err, l.settings.ServerURL))
			return ExitTerminatedError
		case key == "TaskAgentSessionConflictException" || st == http.StatusConflict:
			l.out.sayErr("SessionExist")
			conflicts++
			if conflicts > 1 && time.Duration(conflicts)*interval >= window {
				l.out.sayErr("SessionExistStopRetry", strconv.FormatFloat(window.Seconds(), 'f', -1, 64))
				return ExitTerminatedError
			}
		case st == http.StatusUnauthorized || st == http.StatusForbidden || key == "TaskAgentPoolNotFoundException" ||
			(errors.As(err, &te) && (te.status == http.StatusUnauthorized || te.status == http.StatusBadRequest)):
			l.out.sayErr("SessionCreateFailed", describe(err, l.settings.ServerURL))
			return ExitTerminatedError
		default:
			if !erroring {
				l.out.sayErr("QueueConError", time.Now(), describe(err, l.settings.ServerURL))
				erroring = true
			}
		}
		if !sleepCtx(ctx, interval) {
			return ExitSuccess
		}
	}
}

// finish stops polling, deletes the session (30 s budget, like DeleteSessionAsync) and returns
// code. The poller must be gone first: a poll answered "session expired" after the delete would
// otherwise create a new session that outlives this process.
func (l *listener) finish(code int) int {
	if l.stopPoll != nil {
		l.stopPoll()
	}
	if id := l.session(); id != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.srv.deleteSession(ctx, id); err != nil {
			l.out.tracef("delete session: %v", err)
		}
		l.setSession("")
	}
	return code
}

type pollEvent struct {
	msg  *agentMessage
	exit int // >= 0: the loop must end with this code
}

// poll long-polls messages until ctx ends, acknowledging each one (DELETE) before handing it over.
func (l *listener) poll(ctx context.Context, events chan<- pollEvent) {
	var last uint64
	backoff := envDuration(EnvPollBackoff, 15*time.Second)
	erroring := false
	refreshed := false
	send := func(e pollEvent) bool {
		select {
		case events <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		m, err := l.srv.getMessage(ctx, l.session(), last)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.out.tracef("get message: %v", err)
			st, key := statusOf(err), typeKeyOf(err)
			var te *tokenError
			switch {
			case key == "TaskAgentSessionExpiredException":
				if code := l.createSession(ctx); code >= 0 {
					send(pollEvent{exit: code})
					return
				}
				continue
			case key == "TaskAgentAccessTokenExpiredException":
				l.out.line(MsgTokenRevoked)
				send(pollEvent{exit: ExitSuccess})
				return
			case st == http.StatusUnauthorized && !refreshed:
				refreshed = true // the token may have expired: get a fresh one once
				if _, err := l.srv.auth.get(ctx, true); err == nil {
					continue
				}
				fallthrough
			case st == http.StatusUnauthorized || st == http.StatusForbidden || st == http.StatusNotFound ||
				(errors.As(err, &te) && te.status >= 400 && te.status < 500):
				l.out.errorf("An error occurred: %s", describe(err, l.settings.ServerURL))
				send(pollEvent{exit: ExitRetryableError})
				return
			default:
				if !erroring {
					l.out.sayErr("QueueConError", time.Now(), describe(err, l.settings.ServerURL))
					erroring = true
				}
				if !sleepCtx(ctx, backoff) {
					return
				}
				continue
			}
		}
		refreshed = false
		if erroring {
			l.out.say("QueueConnected", time.Now())
			erroring = false
		}
		if m == nil {
			continue
		}
		last = m.MessageID
		if err := l.srv.deleteMessage(ctx, l.session(), m.MessageID); err != nil {
			l.out.tracef("delete message %d: %v", m.MessageID, err)
		}
		if !send(pollEvent{msg: m}) {
			return
		}
	}
}

func (l *listener) loop(ctx context.Context) int {
	pollCtx, cancelPoll := context.WithCancel(ctx)
	pollDone := make(chan struct{})
	l.stopPoll = func() {
		cancelPoll()
		<-pollDone
	}
	defer cancelPoll()
	events := make(chan pollEvent)
	go func() {
		defer close(pollDone)
		l.poll(pollCtx, events)
	}()
	stopCh := l.stopCh
	for {
		select {
		case <-stopCh:
			stopCh = nil
			l.stopping = true
			cancelPoll()
			if l.job == nil {
				return l.finish(ExitSuccess)
			}
			l.job.cancel(true) // JobDispatcher.ShutdownAsync: no time limit on the worker
		case ev := <-events:
			if ev.msg == nil {
				l.abortJob()
				return l.finish(ev.exit)
			}
			if code := l.handle(ev.msg); code >= 0 {
				return code
			}
		case r := <-l.jobDone:
			l.complete(r)
			l.job = nil
			if l.pending != "" {
				return l.update(l.pending)
			}
			if l.stopping || l.once {
				return l.finish(ExitSuccess)
			}
		}
	}
}

// handle processes one message; a code >= 0 ends the listener with it.
func (l *listener) handle(m *agentMessage) int {
	l.out.tracef("message %d %s: %s", m.MessageID, m.MessageType, m.Body)
	switch m.MessageType {
	case MsgTypeJobRequest:
		var b JobBody
		if err := json.Unmarshal([]byte(m.Body), &b); err != nil {
			l.out.errorf("An error occurred: bad job message: %v", err)
			return -1
		}
		if l.job != nil || l.stopping || l.pending != "" {
			l.out.tracef("ignoring job %d: busy", b.RequestID)
			return -1
		}
		l.startJob(b)
	case MsgTypeCancellation:
		var b struct {
			JobID string `json:"jobId"`
		}
		json.Unmarshal([]byte(m.Body), &b)
		if l.job != nil && (b.JobID == "" || strings.EqualFold(b.JobID, l.job.body.JobID)) {
			l.job.cancel(false)
		}
	case MsgTypeRefresh:
		var b struct {
			AgentID       int    `json:"agentId"`
			TargetVersion string `json:"targetVersion"`
		}
		json.Unmarshal([]byte(m.Body), &b)
		if _, off := os.LookupEnv("agent.disableupdate"); off {
			l.out.tracef("agent.disableupdate is set: ignoring the update to %s", b.TargetVersion)
			return -1
		}
		if b.TargetVersion == "" || b.TargetVersion == l.root.version {
			return -1
		}
		if l.job != nil {
			l.pending = b.TargetVersion // the real updater waits for the running job
			return -1
		}
		return l.update(b.TargetVersion)
	case MsgTypeSimScript:
		var s map[string]any
		json.Unmarshal([]byte(m.Body), &s)
		if v, ok := s["hang"]; ok && v != false {
			l.hang()
		}
		if v, ok := s["crash"]; ok && v != false {
			kind := "kill"
			if str, ok := v.(string); ok {
				kind = strings.ToLower(str)
			}
			if sig, ok := s["signal"].(string); ok {
				kind = strings.ToLower(sig)
			}
			crash(kind)
		}
		if v, ok := s["exit"].(float64); ok {
			l.out.errorf("An error occurred: scripted exit %d", int(v))
			l.abortJob()
			return l.finish(int(v))
		}
	default:
		l.out.tracef("ignoring message type %s", m.MessageType)
	}
	return -1
}

func (l *listener) workerCommand() *exec.Cmd {
	w := filepath.Join(l.root.binDir, "Agent.Worker")
	if st, err := os.Stat(w); err == nil && st.Mode()&0o111 != 0 {
		return exec.Command(w, "spawnclient", "3")
	}
	return exec.Command(l.root.exe, RoleWorker, "spawnclient", "3")
}

func (l *listener) startJob(b JobBody) {
	name := b.JobDisplayName
	if name == "" {
		name = "Job"
	}
	b.JobDisplayName = name
	l.out.say("RunningJob", time.Now(), name) // JobDispatcher.RunAsync
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// JobDispatcher.RunJobAsync waits for the first renewal of the request and does not even start
	// the worker when it fails for good (RenewJobRequestAsync: TaskAgentJobNotFoundException,
	// TaskAgentJobTokenExpiredException, or retries exhausted): the dispatch ends with no
	// "completed" line and the request is left to the server.
	err := l.srv.updateRequest(ctx, b.RequestID, b.LockToken, jobRequestUpdate{RequestID: b.RequestID})
	if err == nil && b.Sim.FailFirstRenew {
		err = errors.New("TaskAgentJobNotFoundException (scripted by the job's failFirstRenew)")
	}
	if err != nil && (statusOf(err) == http.StatusNotFound || b.Sim.FailFirstRenew) {
		l.out.tracef("Unable to renew job request for job %s for the first time, stop dispatching job to worker: %v", b.JobID, err)
		return
	} else if err != nil {
		l.out.tracef("renew job request %d: %v", b.RequestID, err)
	}
	j := &runningJob{body: b}
	l.job = j
	r, w, err := os.Pipe()
	if err != nil {
		go func() { l.jobDone <- jobResult{job: j, result: "failed"} }()
		return
	}
	j.pipe = w
	c := l.workerCommand()
	c.ExtraFiles = []*os.File{r}
	c.Dir = l.root.dir
	j.cmd = c
	if err := c.Start(); err != nil {
		r.Close()
		l.out.errorf("An error occurred: start worker: %v", err)
		go func() { l.jobDone <- jobResult{job: j, result: "failed"} }()
		return
	}
	r.Close()
	l.out.tracef("worker pid %d for request %d", c.Process.Pid, b.RequestID)
	line, _ := json.Marshal(b)
	w.Write(append(line, '\n'))
	go func() {
		err := c.Wait()
		w.Close()
		res := "failed"
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		switch code {
		case 100 + taskSucceeded:
			res = "succeeded"
		case 100 + taskFailed:
			res = "failed"
		case 100 + taskCanceled:
			res = "canceled"
		}
		l.jobDone <- jobResult{job: j, result: res}
	}()
}

func (l *listener) complete(r jobResult) {
	res := r.result
	if res == "canceled" && r.job.shutdown {
		if _, ok := os.LookupEnv("FAIL_JOB_WHEN_AGENT_DIES"); ok {
			res = "failed"
		}
	}
	b := r.job.body
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now().UTC()
	if err := l.srv.updateRequest(ctx, b.RequestID, b.LockToken, jobRequestUpdate{RequestID: b.RequestID, FinishTime: &now, Result: res}); err != nil {
		l.out.errorf("An error occurred: finish job request %d: %s", b.RequestID, describe(err, l.settings.ServerURL))
	}
	l.out.say("JobCompleted", time.Now(), b.JobDisplayName, strings.ToUpper(res[:1])+res[1:])
}

// readLines reads newline-terminated messages from r until EOF.
func readLines(r *bufio.Reader, fn func(string)) {
	for {
		s, err := r.ReadString('\n')
		if s = strings.TrimSpace(s); s != "" {
			fn(s)
		}
		if err != nil {
			return
		}
	}
}

package fakeagent

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/signal"
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

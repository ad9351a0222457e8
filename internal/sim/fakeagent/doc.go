// Package fakeagent is a fake Azure Pipelines agent: the Agent.Listener, Agent.Worker and self-update
// processes, behaving like the real .NET agent as far as a supervisor can observe (command line,
// VSTS_AGENT_INPUT_* variables, files in the agent root, REST traffic against the simulator, output
// lines, exit codes, signals, the detached updater and its bin symlink swap).
//
// It is a test double for the simulator and the end-to-end tests. It is never shipped in the product
// image, and the product binary must never import it. It must behave like the real agent where the
// behavioural reference (azure-pipelines-agent.md in the project's reference notes) says how, even
// where that is awkward for a supervisor: the point is to catch supervisors that rely on friendlier
// behaviour.
//
// Behaviours taken from the real source (microsoft/azure-pipelines-agent), each cited where it is
// implemented: localized output from bin/<culture>/strings.json chosen by LC_ALL/LC_MESSAGES/LANG
// (StringUtil.EnsureLoaded; strings.go); <root>/.env loaded at every start before VSTS_AGENT_INPUT_*
// is read (Program.MainAsync); .proxy, then VSTS_HTTP_PROXY/http_proxy (VstsAgentWebProxy);
// .agent/.credentials/.credentials_rsaparams read with the listener's rules, a missing .credentials
// ending in exit 2 (CredentialManager.LoadCredentials, RSAParametersSerializable); the worker's
// cancel of a step that ignores signals: SIGINT, 7.5 s, SIGTERM, 2.5 s (ProcessInvoker, AgentKnobs;
// shortened only by a job's explicit SigintTimeoutMs/SigtermTimeoutMs or the real knobs); "Running
// job" without "completed" when the first renewal fails or the job is cancelled before the worker
// starts (JobDispatcher.RunJobAsync); the self-update log in AGENT_DIAGLOGPATH
// (HostContext.GetDiagDirectory); the version from bin/Agent.Listener.deps.json.
//
// Entry points: ListenerMain (Agent.Listener), WorkerMain (Agent.Worker), UpdaterMain (the detached
// updater) and OrphanMain (processes a job leaves behind). Test knobs are environment variables
// named FAKE_AGENT_* (see Env* constants).
package fakeagent

// Environment knobs of the fake agent (never read by the real agent).
const (
	// EnvSessionRetry is the session-conflict retry window (Go duration; default 240s).
	EnvSessionRetry = "FAKE_AGENT_SESSION_RETRY"
	// EnvSessionRetryInterval is the pause between session attempts (default: window/8, within 0.2s..30s).
	EnvSessionRetryInterval = "FAKE_AGENT_SESSION_RETRY_INTERVAL"
	// EnvSigtermCap is how long SIGTERM waits for the graceful shutdown before a hard exit (default 30s).
	EnvSigtermCap = "FAKE_AGENT_SIGTERM_CAP"
	// EnvNet10 = "true" makes SIGTERM kill the listener at once (.NET 10 has no default SIGTERM handler).
	EnvNet10 = "FAKE_AGENT_NET10"
	// EnvRunExits scripts consecutive runs, e.g. "2,2,run,0": the n-th `run` takes the n-th entry
	// (counter in <root>/.fake-runs). An integer exits with that code after "Connecting to the server.";
	// "run" or an empty entry runs normally; "hang" hangs ignoring signals; "crash" dies by SIGKILL;
	// "segv" dies by SIGSEGV. Exhausted or unset: normal run.
	EnvRunExits = "FAKE_AGENT_RUN_EXITS"
	// EnvPollBackoff is the pause after a retriable message-poll error (default 15s, like the real agent).
	EnvPollBackoff = "FAKE_AGENT_POLL_BACKOFF"
	// EnvOrphanSeconds is how long orphans left by a job live (default 60).
	EnvOrphanSeconds = "FAKE_AGENT_ORPHAN_SECONDS"
	// EnvRoot overrides the agent root (default: the parent of the directory holding the executable).
	EnvRoot = "FAKE_AGENT_ROOT"
	// EnvUpdaterPoll is how often the updater checks /proc/<pid> (default 500ms).
	EnvUpdaterPoll = "FAKE_AGENT_UPDATER_POLL"
)

// Files in the agent root.
const (
	FileAgent       = ".agent"
	FileCredentials = ".credentials"
	FileRSAParams   = ".credentials_rsaparams"
	FileCerts       = ".certificates"
	FileService     = ".service"
	FileRuns        = ".fake-runs"
)

// Exit codes of the listener (Constants.cs ReturnCode).
const (
	ExitSuccess              = 0
	ExitTerminatedError      = 1
	ExitRetryableError       = 2
	ExitAgentUpdating        = 3
	ExitRunOnceAgentUpdating = 4
)

// Process-role arguments: argv[1] of the azp-sim binary selects a role when its basename does not.
const (
	RoleListener = "fake-listener"
	RoleWorker   = "fake-worker"
	RoleUpdater  = "fake-updater"
	RoleOrphan   = "fake-orphan"
)

// Package supervisor runs the agent's lifecycle after settings are resolved: it reaches the server,
// installs the package, leases the work directory, configures the agent, runs the listener as a
// supervised child and handles its exit codes and self-updates, and on a stop request drains the
// running job inside the platform's stop budget and deregisters.
//
// It must never leave a ghost agent on any exit path it controls, never pass a secret on argv or
// into the listener's environment, and never signal a process group or -1: signals go to the
// listener's PID alone.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/workdir"
)

// Options are the supervisor's dependencies, built by the command line.
type Options struct {
	Settings   *config.Settings
	Logger     *slog.Logger
	Creds      *secrets.Provider
	HTTPClient *http.Client
	Reaper     *pid1.Reaper
	Signals    <-chan os.Signal
	Environ    []string // the entrypoint's environment; the listener gets a scrubbed copy
	Getenv     func(string) string
	// Progress receives a download progress bar when stdout is a terminal.
	Progress io.Writer
}

// Timings a test or a platform may want to tune; the defaults follow the reference's advice.
var (
	configureTimeout = 3 * time.Minute
	updateTimeout    = 5 * time.Minute
	backoffMin       = time.Second
	backoffMax       = time.Minute
	backoffResetRun  = 30 * time.Second // a run this long resets the backoff
	protectionTTL    = 120              // minutes of ECS scale-in protection, renewed while a job runs
)

type supervisor struct {
	o     Options
	s     *config.Settings
	log   *slog.Logger
	state *stateWriter
	stop  *stopper

	server  *azdo.Client
	poolID  int
	name    string
	taskID  string
	user    *pid1.User // nil: run as ourselves
	lease   *workdir.Lease
	work    string
	env     []string // the listener's environment
	agentID int      // the registration this run owns, 0 until known
	// configuring is set once configure has been started: from then on an agent with our name
	// may exist on the server even if .agent was never written, and a failure must remove it.
	configuring bool
	protector   *protector
	busy        bool
	jobName     string
}

// Run is the lifecycle of `azp-entrypoint run`. It returns nil after a clean stop (deregistered
// unless told not to), or an error whose exit kind the contract's table decides.
func Run(ctx context.Context, o Options) (err error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	sv := &supervisor{o: o, s: o.Settings, log: o.Logger, stop: newStopper(o.Settings.StopTimeout)}
	if sv.state, err = newStateWriter(sv.s.StateDir); err != nil {
		return exit.Config(err)
	}
	go sv.stop.watch(o.Signals)
	// Health turns 1 at the first stop request, whatever the lifecycle is busy with then.
	go func() {
		<-sv.stop.requested
		sv.state.phase(PhaseStopping)
	}()

	defer func() {
		if sv.lease != nil {
			if rerr := sv.lease.Release(); rerr != nil {
				sv.log.Warn("releasing the work slot", "err", rerr)
			}
		}
		sv.state.phase(PhaseStopped)
		if err != nil {
			sv.log.Error("stopped with an error", "err", err, "exit_code", exit.Code(err))
		} else {
			sv.log.Info("stopped cleanly")
		}
	}()

	setupCtx, cancel := sv.stop.context(ctx)
	defer cancel()
	if err := sv.setup(setupCtx); err != nil {
		if sv.stop.isRequested() {
			// Stopped while downloading or configuring: undo whatever was registered, quickly.
			_, reason := sv.stop.info()
			sv.log.Info("stop requested before the agent ran; aborting", "reason", reason)
			if sv.agentID == 0 && !sv.configuring {
				// Configuration never started: nothing of this run is registered. Looking the name
				// up would only spend the stop budget on a server that may be unreachable, and
				// turn a clean stop into exit 1. Only a configuration left in a persistent agent
				// directory (a killed predecessor) is worth the look-up, and only once the pool is
				// known.
				if a, _ := readAgentFile(sv.s.AgentDir); a == nil || sv.poolID == 0 {
					return nil
				}
			}
			return sv.deregister(sv.abortDeadline())
		}
		if sv.agentID != 0 || sv.configuring {
			return errors.Join(err, sv.deregister(time.Now().Add(deregReserve(sv.s.StopTimeout))))
		}
		return err
	}
	return sv.supervise(ctx)
}

// setup is lifecycle steps 2 to 5: server, package, work directory, configuration.
func (sv *supervisor) setup(ctx context.Context) error {
	s := sv.s
	if err := sv.resolveUser(); err != nil {
		return err
	}
	sv.warnReadableTokenFile()
	sv.resolveECS(ctx)
	sv.log.Info("starting", "agent", sv.name, "pool", s.Pool, "url", s.URL, "once", s.Once, "stop_timeout", s.StopTimeout.String())

	var err error
	sv.server, err = azdo.New(ctx, azdo.Options{URL: s.URL, Auth: sv.o.Creds.Authorization, HTTPClient: sv.o.HTTPClient, Logger: sv.log})
	if err != nil {
		return err
	}
	pool, err := sv.server.Pool(ctx, s.Pool)
	if err != nil {
		return err
	}
	sv.poolID = pool.ID

	if err := sv.installPackage(ctx); err != nil {
		return err
	}
	if err := sv.prepareWork(ctx); err != nil {
		return err
	}
	return sv.configure(ctx, false)
}

func (sv *supervisor) uidgid() (int, int) {
	if sv.user == nil {
		return -1, -1
	}
	return sv.user.UID, sv.user.GID
}

// resolveUser decides who the agent runs as (AZP_RUN_AS).
func (sv *supervisor) resolveUser() error {
	spec := sv.s.RunAs
	if os.Geteuid() != 0 {
		if spec == "" {
			return nil
		}
		u, err := pid1.ResolveUser(spec, pid1.PasswdPath, pid1.GroupPath)
		if err != nil {
			return err
		}
		if u.UID != os.Geteuid() {
			return exit.Config(fmt.Errorf("AZP_RUN_AS = %q: switching to uid %d needs the entrypoint to start as root (run the container as root, or unset AZP_RUN_AS)", spec, u.UID))
		}
		return nil
	}
	if spec == "" {
		if _, err := pid1.ResolveUser("agent", pid1.PasswdPath, pid1.GroupPath); err == nil {
			spec = "agent"
		}
	}
	if spec == "" {
		sv.log.Warn("the agent runs as root: the image has no 'agent' user and AZP_RUN_AS is not set")
		return nil
	}
	u, err := pid1.ResolveUser(spec, pid1.PasswdPath, pid1.GroupPath)
	if err != nil {
		return err
	}
	if u.UID == 0 {
		sv.log.Warn("the agent runs as root (AZP_RUN_AS)", "run_as", spec)
		return nil
	}
	sv.user = &u
	return nil
}

// warnReadableTokenFile says when jobs could read AZP_TOKEN_FILE: they run as the agent's user.
func (sv *supervisor) warnReadableTokenFile() {
	if sv.s.TokenSource != config.TokenFile {
		return
	}
	if sv.user == nil {
		if os.Geteuid() != 0 {
			sv.log.Warn("jobs run as the entrypoint's own user and can read AZP_TOKEN_FILE; start the container as root (the agent then runs as AZP_RUN_AS) or use AZP_SECRET_ID", "path", sv.s.TokenFile)
		}
		return
	}
	st, err := os.Stat(sv.s.TokenFile)
	if err != nil {
		return
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	mode := st.Mode().Perm()
	inGroup := false
	for _, g := range append([]uint32{uint32(sv.user.GID)}, sv.user.Groups...) {
		inGroup = inGroup || g == sys.Gid
	}
	if mode&0o004 != 0 || (sys.Uid == uint32(sv.user.UID) && mode&0o400 != 0) || (inGroup && mode&0o040 != 0) {
		sv.log.Warn("AZP_TOKEN_FILE is readable by the agent's user, so jobs can read the token; make it root's with mode 0600", "path", sv.s.TokenFile, "mode", mode.String(), "agent_user", sv.user.Name)
	}
}

// resolveECS reads task metadata when running on ECS: the default agent name and task protection.
func (sv *supervisor) resolveECS(ctx context.Context) {
	s := sv.s
	host, _ := os.Hostname()
	sv.name = s.AgentName
	meta, onECS := ecs.FromEnv(sv.o.Getenv)
	if onECS {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		task, terr := meta.Task(mctx)
		ctr, cerr := meta.Container(mctx)
		if terr == nil && cerr == nil {
			sv.taskID = ecs.TaskID(task.TaskARN)
			if sv.name == "" {
				sv.name = ecs.AgentName(s.AgentNamePrefix, sv.taskID, ctr.Name)
			}
		} else {
			sv.log.Warn("ECS task metadata unavailable; naming the agent after the hostname", "err", errors.Join(terr, cerr))
		}
	}
	if sv.name == "" {
		sv.name = s.AgentNamePrefix + host
		if len(sv.name) > 64 {
			sv.name = sv.name[:64]
		}
	}
	if s.ECSTaskProtection.Resolve(onECS) {
		if p, ok := ecs.ProtectionFromEnv(sv.o.Getenv); ok {
			sv.protector = newProtector(p, sv.stop, sv.log)
		} else if s.ECSTaskProtection == config.On {
			sv.log.Warn("AZP_ECS_TASK_PROTECTION=true but ECS_AGENT_URI is not set; task protection is off")
		}
	}
	_ = sv.state.set(func(st *State) { st.Agent, st.Pool = sv.name, s.Pool })
}

// installPackage is lifecycle step 3.
func (sv *supervisor) installPackage(ctx context.Context) error {
	s := sv.s
	uid, gid := sv.uidgid()
	m, err := agentpkg.Ensure(ctx, agentpkg.Options{
		Dir: s.AgentDir, Version: s.AgentVersion, Platform: s.AgentPlatform, CacheDir: s.AgentCache,
		UID: uid, GID: gid, HTTPClient: sv.o.HTTPClient, Logger: sv.log, Progress: sv.o.Progress,
	}, agentpkg.ServerLister(sv.server))
	if err != nil {
		return err
	}
	sv.log.Info("agent package ready", "version", m.Version, "platform", m.Platform, "dir", s.AgentDir)
	// The agent writes .agent, _diag and, on self-update, bin.<version> into its root.
	if sv.user != nil {
		if err := os.Lchown(s.AgentDir, sv.user.UID, sv.user.GID); err != nil {
			return exit.Runtime(fmt.Errorf("AZP_AGENT_DIR %s: give it to the agent's user: %w", s.AgentDir, err))
		}
	}
	return nil
}

// prepareWork is lifecycle step 4.
func (sv *supervisor) prepareWork(ctx context.Context) error {
	s := sv.s
	uid, gid := sv.uidgid()
	var shared *bool
	switch s.WorkShared {
	case config.On:
		shared = new(bool)
		*shared = true
	case config.Off:
		shared = new(bool)
	}
	lease, err := workdir.Prepare(ctx, workdir.Options{
		Root: s.WorkPath(), Shared: shared, MinFree: s.WorkMinFree, UID: uid, GID: gid,
		Holder: workdir.Holder{Agent: sv.name, Task: sv.taskID}, Logger: sv.log,
	})
	if err != nil {
		return err
	}
	sv.lease, sv.work = lease, lease.Dir
	if s.ToolsDir != "" {
		if err := workdir.PrepareTools(s.ToolsDir, uid, gid); err != nil {
			return err
		}
	}
	extra := map[string]string{}
	if sv.user != nil {
		extra["HOME"], extra["USER"], extra["LOGNAME"] = sv.user.Home, sv.user.Name, sv.user.Name
	} else if os.Geteuid() == 0 {
		extra["AGENT_ALLOW_RUNASROOT"] = "1"
	}
	if s.CACertFile != "" {
		extra["NODE_EXTRA_CA_CERTS"] = s.CACertFile
	}
	sv.env = agentEnv(sv.o.Environ, s, extra)
	return nil
}

// configure is lifecycle step 5: skipped when the agent directory holds this agent's configuration
// and the server still knows it; otherwise unattended with --replace, secrets only in the
// configure process's VSTS_AGENT_INPUT_* environment.
func (sv *supervisor) configure(ctx context.Context, force bool) error {
	s := sv.s
	existing, err := readAgentFile(s.AgentDir)
	if err != nil {
		sv.log.Warn("unreadable agent configuration; configuring again", "err", err)
	}
	if !force && existing.matches(s.URL, s.Pool, sv.name, sv.work) {
		a, err := sv.server.Agent(ctx, sv.poolID, sv.name)
		if err != nil {
			return err
		}
		if a != nil && a.ID == existing.AgentID {
			sv.agentID = a.ID
			sv.log.Info("reusing the agent's configuration", "agent_id", a.ID)
			if !a.Enabled {
				// A previous stop disabled it while draining (AZP_DEREGISTER=false keeps it).
				if err := sv.server.SetEnabled(ctx, sv.poolID, a.ID, true); err != nil {
					return err
				}
			}
			return nil
		}
		sv.log.Info("the server no longer knows the configured agent; configuring again", "agent_id", existing.AgentID)
	}
	if existing != nil {
		if err := wipeConfig(s.AgentDir); err != nil {
			return exit.Runtime(fmt.Errorf("remove the old agent configuration in %s: %w", s.AgentDir, err))
		}
	}

	cred, err := sv.o.Creds.Credential(ctx)
	if err != nil {
		return err
	}
	args := []string{"configure", "--unattended", "--url", s.URL, "--pool", s.Pool, "--agent", sv.name,
		"--work", sv.work, "--replace", "--acceptTeeEula"}
	input := map[string]string{}
	if cred.IsServicePrincipal() {
		args = append(args, "--auth", "SP")
		input["VSTS_AGENT_INPUT_CLIENTID"], input["VSTS_AGENT_INPUT_TENANTID"], input["VSTS_AGENT_INPUT_CLIENTSECRET"] = cred.ClientID, cred.TenantID, cred.ClientSecret
	} else {
		args = append(args, "--auth", "PAT")
		input["VSTS_AGENT_INPUT_TOKEN"] = cred.PAT
	}
	if s.CACertFile != "" {
		rel, err := sv.copyCACert()
		if err != nil {
			return err
		}
		args = append(args, "--sslcacert", rel)
	}
	env := append(append([]string(nil), sv.env...), envList(input)...)

	sv.state.phase(PhaseConfiguring)
	sv.configuring = true
	// The configure process holds the secret in its environment and runs as the same user as
	// jobs, so nothing a job left behind may still be running (on a reconfigure after MissingAgent,
	// which a job could provoke): end every process below us first, each by PID.
	if n, err := pid1.KillDescendants(); err != nil {
		return exit.Runtime(fmt.Errorf("end leftover processes before configuring: %w", err))
	} else if n > 0 {
		sv.log.Warn("ended processes left behind by jobs before configuring the agent", "count", n)
		sv.o.Reaper.Kick()
	}
	sv.log.Info("configuring the agent", "agent", sv.name, "pool", s.Pool, "work", sv.work)
	cctx, cancel := context.WithTimeout(ctx, configureTimeout)
	defer cancel()
	cmd := exec.Command(listenerPath(s.AgentDir), args...)
	cmd.Dir, cmd.Env = s.AgentDir, env
	pid1.PrepareCmd(cmd, sv.user)
	c, err := startChild(sv.o.Reaper, cmd, sv.log)
	if err != nil {
		return exit.Runtime(fmt.Errorf("start %s: %w", cmd.Path, err))
	}
	select {
	case <-c.proc.Done():
	case <-cctx.Done():
		c.proc.KillTree()
		<-c.proc.Done()
	}
	// Whatever happened, learn which agent now carries our name: it is ours to remove.
	if a, _ := readAgentFile(s.AgentDir); a != nil {
		sv.agentID = a.AgentID
	}
	if cctx.Err() != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return exit.Runtime(fmt.Errorf("configure the agent: no answer within %s", configureTimeout))
	}
	if code := c.proc.ExitCode(); code != 0 {
		return exit.Runtime(fmt.Errorf("configure the agent %q in pool %q: the agent's configure exited %d (its output is logged above with source=agent)", sv.name, s.Pool, code))
	}
	if sv.agentID == 0 {
		return exit.Runtime(fmt.Errorf("configure the agent: %s/.agent was not written", s.AgentDir))
	}
	sv.log.Info("agent registered", "agent", sv.name, "agent_id", sv.agentID)
	return nil
}

// copyCACert puts the CA bundle inside the agent root, where --sslcacert must point.
func (sv *supervisor) copyCACert() (string, error) {
	data, err := os.ReadFile(sv.s.CACertFile)
	if err != nil {
		return "", exit.Config(fmt.Errorf("AZP_CA_CERT_FILE %s: %w", sv.s.CACertFile, err))
	}
	const rel = ".azp-ca.pem"
	dst := filepath.Join(sv.s.AgentDir, rel)
	// The agent directory is writable by jobs: write a new file and rename it into place, which
	// replaces whatever is at dst (a planted symlink included) instead of writing through it.
	tmp, err := os.CreateTemp(sv.s.AgentDir, ".azp-ca-*.pem")
	if err == nil {
		_, err = tmp.Write(data)
		err = errors.Join(err, tmp.Chmod(0o644), tmp.Close())
		if err == nil {
			err = os.Rename(tmp.Name(), dst)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		return "", exit.Runtime(fmt.Errorf("write %s: %w", dst, err))
	}
	return rel, nil
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// supervise is lifecycle step 6: run the listener and act on its exit codes until a stop.
func (sv *supervisor) supervise(ctx context.Context) error {
	s := sv.s
	backoff := backoffMin
	reconfigured := false
	for {
		if sv.stop.isRequested() {
			return sv.finishStop(nil)
		}
		args := []string{"run", "--startuptype", "service"}
		if s.Once {
			args = append(args, "--once")
		}
		cmd := exec.Command(listenerPath(s.AgentDir), args...)
		cmd.Dir, cmd.Env = s.AgentDir, sv.env
		pid1.PrepareCmd(cmd, sv.user)
		sv.state.phase(PhaseStarted)
		c, err := startChild(sv.o.Reaper, cmd, sv.log)
		if err != nil {
			return sv.fatal(exit.Runtime(fmt.Errorf("start the listener %s: %w", cmd.Path, err)))
		}
		sv.log.Info("listener started", "pid", c.proc.Pid, "args", args)

		stopped, err := sv.watch(ctx, c)
		if stopped {
			return err
		}
		sv.state.phase(PhaseExited)
		code := c.proc.ExitCode()
		lines := c.lastLines()
		ran := time.Since(c.start)
		if ran >= backoffResetRun {
			backoff = backoffMin
		}
		sv.setBusy(false, "")
		switch code {
		case 0:
			sv.log.Info("the listener finished", "once", s.Once)
			return sv.finishStop(nil)
		case 1:
			switch classifyFailure(lines) {
			case outMissingAgent:
				if reconfigured {
					return sv.fatal(exit.Runtime(fmt.Errorf("the listener lost its registration twice (MissingAgent); agent %q", sv.name)))
				}
				reconfigured = true
				sv.log.Warn("the server no longer knows this agent; configuring it again")
				sv.agentID = 0
				if err := wipeConfig(s.AgentDir); err != nil {
					return sv.fatal(exit.Runtime(err))
				}
				cctx, cancel := sv.stop.context(ctx)
				err := sv.configure(cctx, true)
				cancel()
				if err != nil {
					if sv.stop.isRequested() {
						// A stop during configuration: it ends within setupStopLimit, as in setup.
						sv.state.phase(PhaseStopping)
						return sv.deregister(sv.abortDeadline())
					}
					return sv.fatal(err)
				}
				continue
			case outSessionConflict:
				sv.log.Warn("a session for this agent still exists; retrying after a pause", "backoff", backoff.String())
			default:
				return sv.fatal(exit.Runtime(fmt.Errorf("the listener of agent %q exited 1 (fatal; its output is logged above with source=agent)", sv.name)))
			}
		case 3, 4:
			if err := sv.waitUpdate(ctx, c); err != nil {
				if sv.stop.isRequested() {
					return sv.finishStop(nil)
				}
				return sv.fatal(err)
			}
			continue // relaunch at once with the same arguments, registration kept
		default:
			sv.log.Warn("the listener exited; relaunching after a pause", "exit_code", code, "backoff", backoff.String())
		}
		sv.state.phase(PhaseBackoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-sv.stop.requested:
			t.Stop()
		}
		backoff = min(2*backoff, backoffMax)
	}
}

// watch follows a running listener until it exits (stopped=false) or a stop has been carried out
// (stopped=true, with the stop's outcome).
func (sv *supervisor) watch(ctx context.Context, c *child) (stopped bool, err error) {
	var idle <-chan time.Time
	var idleTimer *time.Timer
	resetIdle := func() {
		if sv.s.IdleTimeout <= 0 {
			return
		}
		if idleTimer != nil {
			idleTimer.Stop()
		}
		idleTimer = time.NewTimer(sv.s.IdleTimeout)
		idle = idleTimer.C
	}
	resetIdle()
	renew := time.NewTicker(time.Minute)
	defer renew.Stop()
	for {
		select {
		case ev := <-c.events:
			sv.onEvent(ev, resetIdle, &idle)
		case <-idle:
			sv.log.Info("no job started within the idle timeout; stopping", "idle_timeout", sv.s.IdleTimeout.String())
			sv.stop.request("idle timeout")
		case <-renew.C:
			sv.renewProtection()
		case <-sv.stop.requested:
			return true, sv.stopListener(c)
		case <-c.proc.Done():
			// Events printed just before the exit still count (e.g. the last job's result).
		drained:
			for {
				select {
				case ev := <-c.events:
					sv.onEvent(ev, resetIdle, &idle)
				default:
					break drained
				}
			}
			if sv.stop.isRequested() {
				return true, sv.finishStop(nil)
			}
			return false, nil
		}
	}
}

func (sv *supervisor) onEvent(ev event, resetIdle func(), idle *<-chan time.Time) {
	switch ev.kind {
	case evListening:
		if !sv.busy {
			sv.state.phase(PhaseListening)
		}
	case evJobStarted:
		*idle = nil
		sv.setBusy(true, ev.job)
	case evJobFinished:
		sv.setBusy(false, "")
		resetIdle()
	case evUpdating:
		sv.state.phase(PhaseUpdating)
	}
}

// setBusy records a job start or end, and holds ECS scale-in protection while a job runs.
func (sv *supervisor) setBusy(busy bool, job string) {
	if busy == sv.busy {
		return
	}
	sv.busy, sv.jobName = busy, job
	if busy {
		sv.log.Info("job started", "job", job)
		_ = sv.state.set(func(s *State) { s.Phase, s.Job = PhaseBusy, job })
	} else {
		_ = sv.state.set(func(s *State) {
			s.Job = ""
			if s.Phase == PhaseBusy {
				s.Phase = PhaseListening
			}
		})
	}
	if sv.protector != nil {
		sv.protector.want(busy)
	}
}

// renewProtection extends scale-in protection for jobs that outlast its expiry.
func (sv *supervisor) renewProtection() {
	if sv.protector != nil && sv.busy {
		sv.protector.renew()
	}
}

// waitUpdate handles exits 3 and 4: the listener staged a self-update and a detached script swaps
// bin once the listener's PID is gone (reaped by now). Wait for its result, then relaunch.
func (sv *supervisor) waitUpdate(ctx context.Context, c *child) error {
	s := sv.s
	sv.state.phase(PhaseUpdating)
	sv.log.Info("the agent is updating itself; waiting for the update to finish", "exit_code", c.proc.ExitCode())
	exited := time.Now().Add(-2 * time.Second)
	deadline := time.Now().Add(updateTimeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if result, ok := updateResult(s.AgentDir, exited); ok {
			if st, err := os.Stat(listenerPath(s.AgentDir)); err == nil && st.Mode()&0o111 != 0 {
				if result == "failed" {
					sv.log.Warn("the agent's self-update failed; relaunching the previous version")
				} else {
					sv.log.Info("the agent's self-update finished; relaunching")
				}
				return nil
			}
		}
		if time.Now().After(deadline) {
			return exit.Runtime(fmt.Errorf("the agent's self-update did not finish within %s (no _diag/SelfUpdate-*.log.succeed in %s)", updateTimeout, s.AgentDir))
		}
		select {
		case <-tick.C:
		case <-sv.stop.requested:
			return errors.New("stop requested during self-update")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// updateResult finds the newest SelfUpdate log marked .succeed or .failed since t.
func updateResult(agentDir string, since time.Time) (string, bool) {
	matches, _ := filepath.Glob(filepath.Join(agentDir, "_diag", "SelfUpdate-*.log.*"))
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil || st.ModTime().Before(since) {
			continue
		}
		switch filepath.Ext(m) {
		case ".succeed":
			return "succeed", true
		case ".failed":
			return "failed", true
		}
	}
	return "", false
}

// stopListener is lifecycle step 8 with the listener running.
func (sv *supervisor) stopListener(c *child) error {
	st := sv.stop
	_, reason := st.info()
	sv.state.phase(PhaseStopping)
	sv.log.Info("stopping", "reason", reason, "deadline", time.Until(st.deadline()).Round(time.Millisecond).String(),
		"job_running", sv.busy, "job_deadline", time.Until(st.cancelAt()).Round(time.Millisecond).String())

	// a. No new job for this agent.
	sv.disable(st.cancelAt())

	// b. Let a running job finish while the budget allows.
	if !sv.busy {
		sv.busy = sv.serverBusy(st.cancelAt())
	}
	if sv.busy && !st.isForced() {
		sv.log.Info("waiting for the running job to finish", "job", sv.jobName, "until", time.Until(st.cancelAt()).Round(time.Millisecond).String())
		t := timerAt(st.cancelAt())
	drain:
		for sv.busy {
			select {
			case ev := <-c.events:
				if ev.kind == evJobFinished {
					sv.setBusy(false, "")
				}
			case <-c.proc.Done():
				break drain
			case <-st.forced:
				sv.log.Info("second signal: not waiting for the job")
				break drain
			case <-t.C:
				sv.log.Warn("the job did not finish within the stop budget; cancelling it", "job", sv.jobName)
				break drain
			}
		}
		t.Stop()
	}

	// b'. SIGINT is the listener's cancel path: it cancels a job, deletes its session, exits 0.
	select {
	case <-c.proc.Done():
	default:
		sv.log.Info("asking the listener to stop (SIGINT)", "pid", c.proc.Pid)
		if err := c.proc.Signal(unix.SIGINT); err != nil {
			sv.log.Warn("signal the listener", "err", err)
		}
		wait := st.deregAt()
		// forced is watched until it fires once: a closed channel in the select would spin.
		forced := st.forced
		if st.isForced() {
			wait = minTime(wait, time.Now().Add(forcedGrace))
			forced = nil
		}
		t := timerAt(wait)
	exitWait:
		for {
			select {
			case <-c.proc.Done():
				break exitWait
			case ev := <-c.events:
				if ev.kind == evJobFinished {
					sv.setBusy(false, "")
				}
			case <-forced:
				forced = nil
				wait = minTime(wait, time.Now().Add(forcedGrace))
				t.Reset(max(0, time.Until(wait)))
			case <-t.C:
				// c. The budget is spent: kill the listener, by its PID alone. Whatever it still
				// runs dies with the container when PID 1 exits.
				sv.log.Warn("the listener did not stop in time; killing it", "pid", c.proc.Pid)
				if err := c.proc.Signal(unix.SIGKILL); err != nil {
					sv.log.Warn("kill the listener", "err", err)
				}
				select {
				case <-c.proc.Done():
				case <-time.After(2 * time.Second):
				}
				break exitWait
			}
		}
		t.Stop()
	}
	sv.setBusy(false, "")
	return sv.finishStop(nil)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// disable asks the server to assign this agent no new job.
func (sv *supervisor) disable(until time.Time) {
	if sv.agentID == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), minTime(until, time.Now().Add(3*time.Second)))
	defer cancel()
	if err := sv.server.SetEnabled(ctx, sv.poolID, sv.agentID, false); err != nil {
		sv.log.Warn("could not disable the agent on the server; it may still be offered a job", "err", err)
		return
	}
	sv.log.Info("agent disabled on the server: no new job will be assigned", "agent", sv.name)
}

// serverBusy asks the server whether a job is assigned that the output has not shown yet.
func (sv *supervisor) serverBusy(until time.Time) bool {
	ctx, cancel := context.WithDeadline(context.Background(), minTime(until, time.Now().Add(2*time.Second)))
	defer cancel()
	a, err := sv.server.Agent(ctx, sv.poolID, sv.name)
	if err != nil || a == nil {
		return false
	}
	if a.AssignedRequest != nil {
		sv.jobName = "request " + strconv.FormatUint(a.AssignedRequest.ID, 10)
		return true
	}
	return false
}

// abortDeadline bounds the clean-up after a stop that interrupted a download or a configuration:
// the contract gives such a stop 5 s in all.
func (sv *supervisor) abortDeadline() time.Time {
	at, _ := sv.stop.info()
	return minTime(at.Add(setupStopLimit), sv.stop.deadline())
}

// finishStop is lifecycle steps 8d and 8e once the listener is gone.
func (sv *supervisor) finishStop(cause error) error {
	sv.state.phase(PhaseStopping)
	if !sv.stop.isRequested() {
		sv.stop.request("listener finished")
	}
	err := sv.deregister(sv.stop.deadline())
	return errors.Join(cause, err)
}

// fatal is lifecycle step 9: a fatal exit also deregisters.
func (sv *supervisor) fatal(cause error) error {
	sv.stop.request("fatal error")
	sv.state.phase(PhaseStopping)
	return errors.Join(cause, sv.deregister(sv.stop.deadline()))
}

// deregister removes the agent from the pool with freshly fetched credentials, retrying until the
// deadline: the server refuses while it still holds the agent's cancelled job.
func (sv *supervisor) deregister(deadline time.Time) error {
	s := sv.s
	if !s.Deregister {
		sv.log.Info("keeping the registration (AZP_DEREGISTER=false)", "agent", sv.name)
		return nil
	}
	if sv.server == nil {
		return nil // never reached the server: nothing can have been registered
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	id := sv.agentID
	if id == 0 {
		// A stop during configuration: whatever carries our name now is ours.
		a, err := sv.server.Agent(ctx, sv.poolID, sv.name)
		if err != nil {
			return exit.Runtime(fmt.Errorf("deregister: look up agent %q: %w (remove it later with `azp-entrypoint prune`)", sv.name, err))
		}
		if a == nil {
			return nil
		}
		id = a.ID
	}
	start := time.Now()
	var lastErr error
	for attempt := 1; ; attempt++ {
		err := sv.server.DeleteAgent(ctx, sv.poolID, id)
		if err == nil { // an agent already gone counts as removed
			sv.log.Info("agent deregistered", "agent", sv.name, "agent_id", id, "took", time.Since(start).Round(time.Millisecond).String())
			if werr := wipeConfig(s.AgentDir); werr != nil {
				sv.log.Warn("remove the local agent configuration", "err", werr)
			}
			sv.agentID = 0
			return nil
		}
		lastErr = err
		sv.log.Debug("deregistration refused; retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return exit.Runtime(fmt.Errorf("deregister agent %q (id %d) from pool %q: %w; the stop deadline has passed, remove it later with `azp-entrypoint prune`", sv.name, id, s.Pool, lastErr))
		case <-time.After(min(time.Second, time.Duration(attempt)*250*time.Millisecond)):
		}
	}
}

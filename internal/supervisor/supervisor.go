// Package supervisor runs the agent's lifecycle after settings are resolved: it reaches the server,
// installs the package, leases the work directory, configures the agent, runs the listener as a
// supervised child and handles its exit codes and self-updates, and on a stop request drains the
// running job inside the platform's stop budget and deregisters.
//
// It must never leave a ghost agent on any exit path it controls, never pass a secret on argv or
// into the listener's environment, and never signal a process group or -1: signals go to the
// listener's PID alone.
//
// Files, one stage each, in the order Run takes them:
//
//	supervisor.go    Run: the steps in order, each resource's cleanup deferred where it is acquired
//	identity.go      who the agent runs as and what it is called (AZP_RUN_AS, ECS task metadata)
//	prepare.go       the agent package and the work directory
//	configure.go     the agent's registration on the server (configure)
//	registration.go  the registration as a value, and its removal
//	watch.go         the listener's runs: start, follow its output and job, act on its exit
//	decide.go        Decide: what a listener exit means (a pure function)
//	update.go        the agent's self-update
//	stop.go          the stop sequence; stopbudget.go plans its deadlines
package supervisor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/metrics"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
	"github.com/azp-entrypoint/azp-entrypoint/internal/preflight"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
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
	// Metrics receives the run's EMF records (contract, "Metrics"); nil discards them.
	Metrics *metrics.Writer
	// Progress receives a download progress bar when stdout is a terminal.
	Progress io.Writer
}

// Timings a test or a platform may want to tune; the defaults follow the reference's advice.
var (
	configureTimeout   = 3 * time.Minute
	updateTimeout      = 5 * time.Minute
	backoffMin         = time.Second
	backoffMax         = time.Minute
	backoffResetRun    = 30 * time.Second // a run this long resets the backoff
	protectionTTL      = 120              // minutes of ECS scale-in protection, renewed while a job runs
	serverCheckTimeout = 10 * time.Second // asking the server to confirm what the listener printed
)

// supervisor is what the stages share. Each field is set once, by the stage that acquires it.
type supervisor struct {
	o     Options
	s     *config.Settings
	log   *slog.Logger
	state *stateWriter
	stop  *stopper

	// identity.go
	name      string
	taskID    string
	user      *pid1.User // nil: run as ourselves
	protector *protector // nil: no ECS task protection
	// Run
	server *azdo.Client
	// prepare.go
	work string
	env  []string // the listener's environment
	// metrics.go
	started time.Time
	online  bool   // TimeToOnline was written
	outcome string // how the listener was stopped, for StopOutcome; "" while it never ran
}

// Run is the lifecycle of `azp-entrypoint run`. It returns nil after a clean stop (deregistered
// unless told not to), or an error whose exit kind the contract's table decides.
func Run(ctx context.Context, o Options) (err error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	sv := &supervisor{o: o, s: o.Settings, log: o.Logger, stop: newStopper(o.Settings.StopTimeout), started: time.Now()}
	if sv.state, err = newStateWriter(sv.s.StateDir); err != nil {
		return exit.Config(err)
	}
	defer sv.report(&err)
	go sv.stop.watch(o.Signals)
	// Health turns 1 at the first stop request, whatever the lifecycle is busy with then.
	go func() {
		<-sv.stop.requested
		sv.state.phase(PhaseStopping)
	}()
	// Setup (steps 1 to 5) is aborted by the first stop request.
	setup, cancel := sv.stop.context(ctx)
	defer cancel()

	// Who the agent runs as, and its name.
	if err := sv.resolveUser(); err != nil {
		return sv.aborted(err)
	}
	sv.warnReadableTokenFile()
	// Local settings (agent directory, work directory as the agent's user) before any network.
	uid, gid := sv.uidgid()
	if err := preflight.Local(sv.s, uid, gid); err != nil {
		return sv.aborted(err)
	}
	sv.resolveECS(setup)
	sv.log.Info("starting", "agent", sv.name, "pool", sv.s.Pool, "url", sv.s.URL, "once", sv.s.Once, "stop_timeout", sv.s.StopTimeout.String())

	// Step 2: the server and the pool.
	sv.server, err = azdo.New(setup, azdo.Options{URL: sv.s.URL, Auth: o.Creds.Authorization, HTTPClient: o.HTTPClient, Logger: sv.log})
	if err != nil {
		return sv.aborted(err)
	}
	pool, err := sv.server.Pool(setup, sv.s.Pool)
	if err != nil {
		return sv.aborted(err)
	}

	// From here an agent of ours may exist in the pool: however Run ends, it is removed (unless
	// AZP_DEREGISTER=false). The stop sequence removes it before the work slot is released; this is
	// the net under every other way out.
	reg := sv.newRegistration(pool.ID)
	defer func() {
		err = errors.Join(err, reg.Remove(sv.removeDeadline()))
		sv.stopOutcome(reg)
	}()

	// Step 3: the agent package.
	if err := sv.installPackage(setup); err != nil {
		return sv.aborted(err)
	}
	// Step 4: the work directory, leased until Run returns.
	lease, err := sv.prepareWork(setup)
	if err != nil {
		return sv.aborted(err)
	}
	defer func() {
		if rerr := lease.Release(); rerr != nil {
			sv.log.Warn("releasing the work slot", "err", rerr)
		}
	}()
	// Step 5: the registration.
	if err := sv.configure(setup, reg, false); err != nil {
		return sv.aborted(err)
	}
	// Steps 6 to 9: the listener, until a stop or a fatal exit.
	return sv.supervise(ctx, reg)
}

// aborted ends a setup step's failure. A failure caused by a stop request is a clean stop: the
// deferred removal undoes whatever was registered, within the 5 s the contract gives such a stop.
func (sv *supervisor) aborted(err error) error {
	if !sv.stop.isRequested() {
		return err
	}
	_, reason := sv.stop.info()
	sv.log.Info("stop requested before the agent ran; aborting", "reason", reason)
	return nil
}

// removeDeadline bounds the deferred removal of the registration: the stop's deadline once a stop
// is under way (5 s in all for a stop that interrupted the setup), else a deregistration reserve.
func (sv *supervisor) removeDeadline() time.Time {
	if sv.stop.isRequested() {
		return sv.abortDeadline()
	}
	return time.Now().Add(deregReserve(sv.s.StopTimeout))
}

// report publishes the final state and logs how the run ended.
func (sv *supervisor) report(err *error) {
	sv.state.phase(PhaseStopped)
	if *err != nil {
		sv.log.Error("stopped with an error", "err", *err, "exit_code", exit.Code(*err))
	} else {
		sv.log.Info("stopped cleanly")
	}
}

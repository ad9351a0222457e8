package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
	"github.com/azp-entrypoint/azp-entrypoint/internal/metrics"
	"github.com/azp-entrypoint/azp-entrypoint/internal/pid1"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/supervisor"
)

// resolve resolves the settings given on the command line and in the environment, logging
// problems in the requested format, and returns the logger for the rest of the command.
func resolve(ctx context.Context, s *streams, given map[string]string, masker *logging.Masker) (*config.Settings, *slog.Logger, error) {
	log := earlyLogger(s, given, masker)
	settings, err := config.Resolve(ctx, config.Options{Flags: given, Env: s.env, Secret: secrets.FetchSecretWith(secrets.SecretsManagerOptions{Masker: masker, Logger: log})})
	if err != nil {
		if ctx.Err() != nil {
			return nil, log, reported{err} // stopped: the caller says so
		}
		log.Error("invalid settings", "err", err, "exit_code", exit.Code(err))
		return nil, log, reported{err}
	}
	masker.Add(settings.Secrets...)
	eraseFromArgv(settings.Secrets)
	log = logging.New(s.out, logging.Options{Format: settings.LogFormat, Level: settings.LogLevel}, masker)
	for _, w := range settings.Warnings {
		log.Warn(w)
	}
	return settings, log, nil
}

func runCommand(ctx context.Context, s *streams, args []string) error {
	fs, given := newFlags("run", s, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	// PID-1 duties come first: a signal during the secret fetch or the download must be seen, and
	// orphans must be reaped from the start.
	masker := logging.NewMasker()
	boot := earlyLogger(s, given(), masker)
	signals := pid1.Notify(ctx)
	reaper, err := pid1.Setup(boot)
	if err != nil {
		boot.Error("cannot supervise child processes", "err", err)
		return reported{exit.Runtime(err)}
	}
	// Resolving the settings may wait on Secrets Manager: a stop signal meanwhile aborts it. The
	// signals go on to the supervisor, which starts the stop sequence from the first of them.
	rctx, stopped := stopContext(ctx, signals)
	settings, log, err := resolve(rctx, s, given(), masker)
	if err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			// Stopped before anything could be registered: a clean stop.
			log.Info("stop requested while resolving the settings; nothing was registered")
			return nil
		}
		return err
	}
	hc, err := azdo.HTTPClient(settings)
	if err != nil {
		log.Error("HTTP client", "err", err)
		return reported{err}
	}
	creds, err := secrets.NewProvider(ctx, settings, secrets.ProviderOptions{Masker: masker, Logger: log, HTTPClient: hc})
	if err != nil {
		log.Error("credentials", "err", err)
		return reported{err}
	}
	o := supervisor.Options{
		Settings: settings, Logger: log, Creds: creds, HTTPClient: hc, Reaper: reaper,
		Signals: stopped, Environ: os.Environ(), Metrics: metrics.New(s.out),
	}
	if isTerminal(s.err) {
		o.Progress = s.err
	}
	if err := supervisor.Run(ctx, o); err != nil {
		return reported{err}
	}
	return nil
}

// stopContext passes signals on unchanged and returns a context that the first of them cancels,
// for the work done before the supervisor watches the signals itself.
func stopContext(ctx context.Context, signals <-chan os.Signal) (context.Context, <-chan os.Signal) {
	sctx, cancel := context.WithCancel(ctx)
	out := make(chan os.Signal, cap(signals)+1)
	go func() {
		for sig := range signals {
			cancel()
			out <- sig
		}
	}()
	return sctx, out
}

func installCommand(ctx context.Context, s *streams, args []string) error {
	fs, _ := newFlags("install", s, false)
	ver := fs.String("version", "", "agent version to install, e.g. 4.260.0 (required)")
	platform := fs.String("platform", "", "linux-x64, linux-arm64, linux-musl-x64 or linux-musl-arm64 (default: detected)")
	dir := fs.String("dir", "/azp/agent", "directory to install into (AZP_AGENT_DIR at run time)")
	sum := fs.String("sha256", "", "expected SHA-256 of the package (recommended)")
	url := fs.String("url", "", "download URL, for a mirror (default: Microsoft's public download location)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *ver == "" {
		return exit.Config(errors.New("--version is required (e.g. --version 4.260.0)"))
	}
	format, _ := s.env("AZP_LOG_FORMAT")
	log := logging.New(s.out, logging.Options{Format: format, Level: "info"}, logging.NewMasker())
	p := *platform
	if p == "" {
		var err error
		if p, err = agentpkg.DetectPlatform(); err != nil {
			return exit.Config(fmt.Errorf("--platform: %w", err))
		}
	}
	if *url == "" {
		*url = agentpkg.PublicURL(*ver, p)
	}
	o := agentpkg.Options{Dir: *dir, Version: *ver, Platform: p, UID: -1, GID: -1, Logger: log}
	if strings.HasPrefix(*url, "file://") {
		// A mirror on the local file system (a build context mounted into an image build): only
		// the operator's own --url may name a local file, never a URL a server hands out.
		t := &http.Transport{}
		t.RegisterProtocol("file", http.NewFileTransport(http.Dir("/")))
		o.HTTPClient = &http.Client{Transport: t}
	}
	if isTerminal(s.err) {
		o.Progress = s.err
	}
	m, err := agentpkg.Install(ctx, o, *url, *sum)
	if err != nil {
		return err
	}
	log.Info("agent installed", "version", m.Version, "platform", m.Platform, "dir", *dir, "sha256", m.SHA256)
	return nil
}

// isTerminal reports whether w is a terminal: progress bars are drawn only there, on the stream
// they are drawn on.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func healthCommand(_ context.Context, s *streams, args []string) error {
	fs, _ := newFlags("health", s, false)
	def, _ := s.env("AZP_STATE_DIR")
	if def == "" {
		def = "/tmp/azp-entrypoint"
	}
	dir := fs.String("state-dir", def, "where the entrypoint keeps its state [AZP_STATE_DIR]")
	if err := parse(fs, args); err != nil {
		return err
	}
	if handled, err := scaleHealth(s, *dir); handled { // a scaler container (scale.go)
		return err
	}
	st, err := supervisor.Health(*dir)
	if err != nil {
		fmt.Fprintln(s.out, "unhealthy:", err)
		// The health check's answer is 1 for every unhealthy state, whatever the cause.
		return reported{errors.New("unhealthy")}
	}
	fmt.Fprintf(s.out, "healthy: agent %s is %s since %s\n", st.Agent, st.Phase, st.Since.Format(time.RFC3339))
	return nil
}

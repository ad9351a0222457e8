// Package preflight is the backend of `azp-entrypoint check`: it runs every check the lifecycle
// depends on (settings, credentials, server, pool, permission to manage agents, an agent package
// for the platform, the work directory) and reports one line per check.
//
// It must never register, modify or delete anything on the server: the permission check uses a
// no-op probe (see azdo.Client.CanManage). The exit code of `check` is the first failure's, which
// FirstError returns for exit.Code.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
)

// Result is the outcome of one check.
type Result struct {
	Name    string
	OK      bool
	Skipped bool // not run because a check it needs failed (or it was not configured)
	Detail  string
	Err     error
}

// Deps are the inputs of Run.
type Deps struct {
	Settings    *config.Settings // nil with SettingsErr when resolution failed
	SettingsErr error
	Provider    *secrets.Provider // nil: built from Settings
	HTTPClient  *http.Client      // nil: azdo.HTTPClient(Settings)
	Masker      *logging.Masker
	Logger      *slog.Logger
	// Platform detects the agent platform when AZP_AGENT_PLATFORM is not set.
	Platform func() (string, error)
	// WorkDir checks that the work directory is writable and has free space (the workdir
	// package); nil: the check is reported as skipped.
	WorkDir func(ctx context.Context) error
	// Out receives one line per check; nil: nothing is printed.
	Out io.Writer
	// UnreachableFor bounds the retries of an unreachable server (default 2m, as for run).
	UnreachableFor time.Duration
	// ClientOptions adjusts the Azure DevOps client (tests: short backoff).
	ClientOptions func(*azdo.Options)
}

// Check names, in the order they run.
const (
	CheckSettings    = "settings"
	CheckCredentials = "credentials"
	CheckServer      = "server"
	CheckPool        = "pool"
	CheckPermissions = "permissions"
	CheckPackage     = "package"
	CheckWorkDir     = "workdir"
)

// Run runs the checks and prints one line per check.
func Run(ctx context.Context, d Deps) []Result {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	r := &runner{d: d}
	r.run(ctx)
	return r.results
}

// FirstError returns the first failed check's error (nil when none failed); exit.Code of it is
// the exit code of `check`.
func FirstError(results []Result) error {
	for _, r := range results {
		if !r.OK && !r.Skipped {
			if r.Err == nil {
				return exit.Runtime(fmt.Errorf("check %s failed", r.Name))
			}
			return fmt.Errorf("check %s: %w", r.Name, r.Err)
		}
	}
	return nil
}

type runner struct {
	d       Deps
	results []Result
}

func (r *runner) add(res Result) {
	r.results = append(r.results, res)
	if r.d.Out == nil {
		return
	}
	state, detail := "ok", res.Detail
	switch {
	case res.Skipped:
		state = "skip"
	case !res.OK:
		state = "FAIL"
		if res.Err != nil {
			detail = res.Err.Error()
		}
		detail += fmt.Sprintf(" [exit %d]", exit.Code(res.Err))
	}
	fmt.Fprintf(r.d.Out, "%-4s  %-11s  %s\n", state, res.Name, r.d.Masker.String(strings.ReplaceAll(detail, "\n", "; ")))
}

func (r *runner) ok(name, detail string)    { r.add(Result{Name: name, OK: true, Detail: detail}) }
func (r *runner) fail(name string, e error) { r.add(Result{Name: name, Err: e}) }
func (r *runner) skip(name, why string)     { r.add(Result{Name: name, Skipped: true, Detail: why}) }

func (r *runner) run(ctx context.Context) {
	d := r.d
	s := d.Settings
	if d.SettingsErr != nil || s == nil {
		err := d.SettingsErr
		if err == nil {
			err = exit.Config(errors.New("no settings"))
		}
		r.fail(CheckSettings, err)
		for _, n := range []string{CheckCredentials, CheckServer, CheckPool, CheckPermissions, CheckPackage, CheckWorkDir} {
			r.skip(n, "needs valid settings")
		}
		return
	}
	detail := fmt.Sprintf("url %s, pool %q", s.URL, s.Pool)
	if n := len(s.Warnings); n > 0 {
		detail += fmt.Sprintf(", %d warning(s): %s", n, strings.Join(s.Warnings, "; "))
	}
	r.ok(CheckSettings, detail)

	client, ok := r.server(ctx)
	var pool azdo.Pool
	if ok {
		var err error
		if pool, err = client.Pool(ctx, s.Pool); err != nil {
			r.fail(CheckPool, err)
			r.skip(CheckPermissions, "needs the pool")
		} else {
			r.ok(CheckPool, fmt.Sprintf("%q has id %d", pool.Name, pool.ID))
			if err := client.CanManage(ctx, pool.ID); err != nil {
				r.fail(CheckPermissions, err)
			} else {
				r.ok(CheckPermissions, "may manage the pool's agents (register, disable, remove)")
			}
		}
		r.pkg(ctx, client)
	} else {
		for _, n := range []string{CheckPool, CheckPermissions, CheckPackage} {
			r.skip(n, "needs the server")
		}
	}

	if d.WorkDir == nil {
		r.skip(CheckWorkDir, "not checked")
	} else if err := d.WorkDir(ctx); err != nil {
		r.fail(CheckWorkDir, err)
	} else {
		r.ok(CheckWorkDir, s.WorkPath()+" is writable")
	}
}

// server runs the credentials and server checks and returns a client for the rest.
func (r *runner) server(ctx context.Context) (*azdo.Client, bool) {
	d, s := r.d, r.d.Settings
	hc := d.HTTPClient
	if hc == nil {
		var err error
		if hc, err = azdo.HTTPClient(s); err != nil {
			r.fail(CheckCredentials, err)
			r.skip(CheckServer, "needs credentials")
			return nil, false
		}
	}
	p := d.Provider
	if p == nil {
		var err error
		p, err = secrets.NewProvider(ctx, s, secrets.ProviderOptions{Masker: d.Masker, Logger: d.Logger, HTTPClient: hc})
		if err != nil {
			r.fail(CheckCredentials, err)
			r.skip(CheckServer, "needs credentials")
			return nil, false
		}
	}
	// One fetch of the credential serves every later check.
	auth, err := p.Snapshot(ctx)
	if err != nil {
		r.fail(CheckCredentials, err)
		r.skip(CheckServer, "needs credentials")
		return nil, false
	}
	if s.IsServicePrincipal() {
		r.ok(CheckCredentials, fmt.Sprintf("service principal %s: Entra ID issued an access token", s.ClientID))
	} else {
		r.ok(CheckCredentials, "personal access token from "+tokenSource(s))
	}

	o := azdo.Options{URL: s.URL, Auth: auth, HTTPClient: hc, Logger: d.Logger, UnreachableFor: d.UnreachableFor}
	if d.ClientOptions != nil {
		d.ClientOptions(&o)
	}
	client, err := azdo.New(ctx, o)
	if err != nil {
		r.fail(CheckServer, err)
		return nil, false
	}
	user, err := client.Connect(ctx)
	if err != nil {
		r.fail(CheckServer, err)
		return nil, false
	}
	detail := "connected to " + s.URL
	if user != "" {
		detail += " as " + user
	}
	r.ok(CheckServer, detail)
	return client, true
}

func tokenSource(s *config.Settings) string {
	switch s.TokenSource {
	case config.TokenFile:
		return "AZP_TOKEN_FILE " + s.TokenFile
	case config.TokenFromSecret:
		return "secret " + s.SecretID
	}
	if s.Sources["AZP_TOKEN"] == "flag" {
		return "--token"
	}
	return "AZP_TOKEN"
}

func (r *runner) pkg(ctx context.Context, client *azdo.Client) {
	s := r.d.Settings
	platform := s.AgentPlatform
	if platform == "" && r.d.Platform != nil {
		var err error
		if platform, err = r.d.Platform(); err != nil {
			r.fail(CheckPackage, exit.Runtime(fmt.Errorf("cannot detect the agent platform: %w (set AZP_AGENT_PLATFORM)", err)))
			return
		}
	}
	if platform == "" {
		r.skip(CheckPackage, "AZP_AGENT_PLATFORM not set and no detection available")
		return
	}
	pkgs, err := client.Packages(ctx, platform, 0)
	if err != nil {
		r.fail(CheckPackage, err)
		return
	}
	if len(pkgs) == 0 {
		r.fail(CheckPackage, exit.Runtime(fmt.Errorf("%s offers no agent package for platform %s", s.URL, platform)))
		return
	}
	if v := s.AgentVersion; v != "" {
		for _, p := range pkgs {
			if p.Version == v {
				r.ok(CheckPackage, fmt.Sprintf("%s %s is available (%s)", platform, v, p.Filename))
				return
			}
		}
		r.fail(CheckPackage, exit.Config(fmt.Errorf("AZP_AGENT_VERSION = %q: no agent package of that version for %s at %s (newest: %s)", v, platform, s.URL, pkgs[0].Version)))
		return
	}
	r.ok(CheckPackage, fmt.Sprintf("%s %s is the newest of %d", platform, pkgs[0].Version, len(pkgs)))
}

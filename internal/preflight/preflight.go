// Package preflight is the backend of `azp-entrypoint check`: it runs every check the lifecycle
// depends on (settings, the agent directory, credentials, server, pool, permission to manage
// agents, an agent package for the platform, the work directory) and reports one plain-text line
// per check. Local is the part `run` uses before it touches the network.
//
// It must never register, modify or delete anything on the server: the permission check asks the
// Security service (azdo.Client.MayManage), and a refused or inconclusive answer is "unknown",
// never a failure (the server's refusal of a registration is the authority). The server is tried
// once with a short timeout. The exit code of `check` is the first failure's, which FirstError
// returns for exit.Code.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
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
	Unknown bool // run, but the answer was refused or inconclusive; not a failure
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
	// UnreachableFor bounds the retries of an unreachable server; default: none, the server is
	// tried once (a typo'd host is reported at once), each request with RequestTimeout.
	UnreachableFor time.Duration
	// RequestTimeout bounds each request to the server (default 15s).
	RequestTimeout time.Duration
	// ClientOptions adjusts the Azure DevOps client (tests: short backoff).
	ClientOptions func(*azdo.Options)
}

// Check names, in the order they run.
const (
	CheckSettings    = "settings"
	CheckAgentDir    = "agentdir"
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
	if d.Out != nil {
		// Log records would land inside the table as JSON lines: print warnings as notes instead.
		d.Logger = slog.New(&noteHandler{out: d.Out, masker: d.Masker})
	}
	r := &runner{d: d}
	r.run(ctx)
	return r.results
}

// FirstError returns the first failed check's error (nil when none failed); exit.Code of it is
// the exit code of `check`.
func FirstError(results []Result) error {
	for _, r := range results {
		if !r.OK && !r.Skipped && !r.Unknown {
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
	case res.Unknown:
		state = "?"
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
func (r *runner) unknown(name, why string)  { r.add(Result{Name: name, Unknown: true, Detail: why}) }

func (r *runner) run(ctx context.Context) {
	d := r.d
	s := d.Settings
	if d.SettingsErr != nil || s == nil {
		err := d.SettingsErr
		if err == nil {
			err = exit.Config(errors.New("no settings"))
		}
		r.fail(CheckSettings, err)
		for _, n := range []string{CheckAgentDir, CheckCredentials, CheckServer, CheckPool, CheckPermissions, CheckPackage, CheckWorkDir} {
			r.skip(n, "needs valid settings")
		}
		return
	}
	detail := fmt.Sprintf("url %s, pool %q", s.URL, s.Pool)
	if n := len(s.Warnings); n > 0 {
		detail += fmt.Sprintf(", %d warning(s): %s", n, strings.Join(s.Warnings, "; "))
	}
	r.ok(CheckSettings, detail)

	// Local first: the agent directory decides whether a download is needed at all.
	local, have, dirErr := agentpkg.CheckDir(agentOptions(s))
	switch {
	case dirErr != nil:
		r.fail(CheckAgentDir, dirErr)
	case have && local.Baked:
		r.ok(CheckAgentDir, fmt.Sprintf("%s holds agent %s (%s), baked without a marker; used as it is", s.AgentDir, local.Current, local.Platform))
	case have:
		r.ok(CheckAgentDir, fmt.Sprintf("%s holds agent %s (%s), installed by the entrypoint", s.AgentDir, local.Current, local.Platform))
	default:
		r.ok(CheckAgentDir, fmt.Sprintf("%s is writable; an agent package will be installed at start", s.AgentDir))
	}

	client, ok := r.server(ctx)
	if ok {
		var err error
		var pool azdo.Pool
		if pool, err = client.Pool(ctx, s.Pool); err != nil {
			r.fail(CheckPool, err)
			r.skip(CheckPermissions, "needs the pool")
		} else {
			r.ok(CheckPool, fmt.Sprintf("%q has id %d", pool.Name, pool.ID))
			r.permissions(ctx, client, pool.ID)
		}
	} else {
		for _, n := range []string{CheckPool, CheckPermissions} {
			r.skip(n, "needs the server")
		}
	}
	r.pkg(ctx, client, local, have)

	uid, gid, who := runAs(s)
	switch {
	case dirErr != nil && strings.HasPrefix(filepath.Clean(s.WorkPath()), filepath.Clean(s.AgentDir)+string(filepath.Separator)):
		r.skip(CheckWorkDir, "inside AZP_AGENT_DIR, which failed")
	case d.WorkDir == nil:
		if err := localWork(s, uid, gid); err != nil {
			r.fail(CheckWorkDir, err)
		} else {
			r.ok(CheckWorkDir, s.WorkPath()+" is writable"+who)
		}
	default:
		if err := d.WorkDir(ctx); err != nil {
			r.fail(CheckWorkDir, err)
		} else if err := reachable(s.WorkPath(), uid, gid); uid >= 0 && err != nil {
			r.fail(CheckWorkDir, err)
		} else {
			r.ok(CheckWorkDir, s.WorkPath()+" is writable"+who)
		}
	}
}

// permissions asks the Security service for the Manage bit; only a yes is reported as ok. A no or
// a refused question is "unknown": the identity's rights are not the PAT's scope, and the
// registration itself (exit 3 when refused) is the authority.
func (r *runner) permissions(ctx context.Context, client *azdo.Client, poolID int) {
	ok, err := client.MayManage(ctx, poolID)
	switch {
	case err != nil:
		r.unknown(CheckPermissions, "the Security service did not say whether the identity may manage the pool's agents ("+err.Error()+"); registration at start decides (exit 3 if refused)")
	case !ok:
		r.unknown(CheckPermissions, "the Security service says the identity lacks Manage on the pool (it cannot see a PAT's scope); if registration is refused at start (exit 3), grant the PAT Agent Pools (read & manage) and the identity the Administrator role on the pool")
	default:
		r.ok(CheckPermissions, "the identity holds Manage on the pool (register, disable, remove agents)")
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

	// One try with a short timeout: a typo'd host must not retry silently for minutes.
	once := d.UnreachableFor
	if once <= 0 {
		once = time.Nanosecond
	}
	timeout := d.RequestTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	o := azdo.Options{URL: s.URL, Auth: auth, HTTPClient: hc, Logger: d.Logger, UnreachableFor: once, RequestTimeout: timeout}
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

func (r *runner) pkg(ctx context.Context, client *azdo.Client, local agentpkg.Marker, have bool) {
	s := r.d.Settings
	if have {
		how := "installed"
		if local.Baked {
			how = "baked into the image"
		}
		r.ok(CheckPackage, fmt.Sprintf("%s %s is %s in %s; no download needed", local.Platform, local.Current, how, s.AgentDir))
		return
	}
	if client == nil {
		r.skip(CheckPackage, "needs the server (AZP_AGENT_DIR holds no package that fits)")
		return
	}
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
	if v := s.AgentVersion; v != "" {
		// The route the real self-updater uses for one version.
		p, err := agentpkg.ServerLister(client).(agentpkg.PackageGetter).Package(ctx, platform, v)
		switch {
		case errors.Is(err, agentpkg.ErrNotPublished):
			r.fail(CheckPackage, exit.Config(fmt.Errorf("AZP_AGENT_VERSION = %q: %s publishes no agent package of that version for %s", v, s.URL, platform)))
		case err != nil:
			r.fail(CheckPackage, err)
		case p.SHA256 == "":
			r.fail(CheckPackage, exit.Runtime(fmt.Errorf("%s gives agent package %s (%s) without a hashValue; it would not be installed", s.URL, v, platform)))
		default:
			r.ok(CheckPackage, fmt.Sprintf("%s %s is available (%s)", platform, v, p.Filename))
		}
		return
	}
	pkgs, err := client.Packages(ctx, platform, 1)
	if err != nil {
		r.fail(CheckPackage, err)
		return
	}
	if len(pkgs) == 0 {
		r.fail(CheckPackage, exit.Runtime(fmt.Errorf("%s offers no agent package for platform %s, and AZP_AGENT_DIR %s holds none (bake one into the image)", s.URL, platform, s.AgentDir)))
		return
	}
	r.ok(CheckPackage, fmt.Sprintf("%s %s is the newest", platform, pkgs[0].Version))
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/agentpkg"
	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
	"github.com/azp-entrypoint/azp-entrypoint/internal/preflight"
	"github.com/azp-entrypoint/azp-entrypoint/internal/prune"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/workdir"
)

func checkCommand(ctx context.Context, s *streams, args []string) error {
	if isScaleCheck(s, args) { // a scaler's settings (scale.go)
		return scaleCheckCommand(ctx, s, args)
	}
	fs, given := newFlags("check", s, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	masker := logging.NewMasker()
	log := earlyLogger(s, given(), masker)
	settings, err := config.Resolve(ctx, config.Options{Flags: given(), Env: s.env, Secret: secrets.FetchSecretWith(secrets.SecretsManagerOptions{Masker: masker, Logger: log})})
	d := preflight.Deps{Settings: settings, SettingsErr: err, Masker: masker, Logger: log, Out: s.out, Platform: agentpkg.DetectPlatform}
	if settings != nil {
		masker.Add(settings.Secrets...)
		eraseFromArgv(settings.Secrets)
		d.WorkDir = func(ctx context.Context) error {
			findings, err := workdir.Check(workdir.Options{Root: settings.WorkPath(), MinFree: settings.WorkMinFree, UID: -1, GID: -1, Logger: log})
			for _, f := range findings {
				if f.Level == workdir.LevelWarn {
					fmt.Fprintf(s.out, "  warning: %s: %s\n", f.Path, f.Message)
				}
			}
			return err
		}
	}
	results := preflight.Run(ctx, d)
	if err := preflight.FirstError(results); err != nil {
		return reported{err}
	}
	return nil
}

func pruneCommand(ctx context.Context, s *streams, args []string) error {
	fs, given := newFlags("prune", s, true)
	prefix := fs.String("prefix", "", "delete only agents whose name starts with this (default: AZP_AGENT_NAME_PREFIX)")
	all := fs.Bool("all-offline", false, "delete every offline agent of the pool, whatever its name")
	offlineFor := fs.Duration("offline-for", time.Hour, "only agents offline at least this long")
	dryRun := fs.Bool("dry-run", false, "list what would be deleted")
	if err := parse(fs, args); err != nil {
		return err
	}
	masker := logging.NewMasker()
	settings, log, err := resolve(ctx, s, given(), masker)
	if err != nil {
		return err
	}
	if *prefix == "" {
		*prefix = settings.AgentNamePrefix
	}
	if *prefix == "" && !*all {
		return exit.Config(errors.New("prune needs --prefix (or AZP_AGENT_NAME_PREFIX), or --all-offline to consider every offline agent"))
	}
	hc, err := azdo.HTTPClient(settings)
	if err != nil {
		return err
	}
	creds, err := secrets.NewProvider(ctx, settings, secrets.ProviderOptions{Masker: masker, Logger: log, HTTPClient: hc})
	if err != nil {
		return err
	}
	auth, err := creds.Snapshot(ctx)
	if err != nil {
		return err
	}
	client, err := azdo.New(ctx, azdo.Options{URL: settings.URL, Auth: auth, HTTPClient: hc, Logger: log})
	if err != nil {
		return err
	}
	pool, err := client.Pool(ctx, settings.Pool)
	if err != nil {
		return err
	}
	// Run prints the list (dry run) and the summary line itself.
	_, err = prune.Run(ctx, client, pool.ID, prune.Options{Prefix: *prefix, AllOffline: *all, OfflineFor: *offlineFor, DryRun: *dryRun, Out: s.out, Logger: log})
	return err
}

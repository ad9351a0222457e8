package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
	"github.com/azp-entrypoint/azp-entrypoint/internal/metrics"
	"github.com/azp-entrypoint/azp-entrypoint/internal/scale"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
)

// scaleCmd is the `scale` command's entry in the command table.
var scaleCmd = command{"scale", "keep one pool supplied with ECS agent tasks on demand (runs as a one-task ECS service)",
	"azp-entrypoint scale [--check] [flags]", scaleCommand}

// scaleParts are what both `scale` and the scale part of `check` build.
type scaleParts struct {
	settings *config.Settings
	scale    *config.ScaleSettings
	azdo     *azdo.Client
	ecs      *ecs.Client
	rate     *scale.RateObserver
}

func scaleFlags(s *streams) (*flag.FlagSet, func() map[string]string, func() map[string]string) {
	fs, given := newFlags("scale", s, true)
	scaleGiven := config.ScaleFlagSet(fs)
	prev := fs.Usage
	fs.Usage = func() {
		prev()
		fmt.Fprintln(s.out, "\nScale settings:")
		fmt.Fprint(s.out, config.ScaleHelp())
	}
	return fs, given, scaleGiven
}

func buildScale(ctx context.Context, s *streams, given, scaleGiven map[string]string, masker *logging.Masker) (*scaleParts, *slog.Logger, error) {
	settings, log, err := resolve(ctx, s, given, masker)
	if err != nil {
		return nil, log, err
	}
	sc, err := config.ResolveScale(scaleGiven, config.Env(s.env), settings)
	if err != nil {
		log.Error("invalid settings", "err", err, "exit_code", exit.Code(err))
		return nil, log, reported{err}
	}
	rate := &scale.RateObserver{}
	hc, err := azdo.HTTPClient(settings)
	if err != nil {
		return nil, log, err
	}
	hc.Transport = rate.Wrap(hc.Transport)
	creds, err := secrets.NewProvider(ctx, settings, secrets.ProviderOptions{Masker: masker, Logger: log, HTTPClient: hc})
	if err != nil {
		return nil, log, err
	}
	client, err := azdo.New(ctx, azdo.Options{URL: settings.URL, Auth: creds.Authorization, HTTPClient: hc, Logger: log})
	if err != nil {
		return nil, log, err
	}
	// The standard AWS chain (the scaler's ECS task role on Fargate); AWS_ENDPOINT_URL_ECS points
	// the client elsewhere (the SDK's service-specific endpoint variable).
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, log, exit.Config(fmt.Errorf("AWS configuration: %w", err))
	}
	if awsCfg.HTTPClient == nil {
		awsCfg.HTTPClient = awshttp.NewBuildableClient()
	}
	awsCfg.HTTPClient = rate.WrapDoer(awsCfg.HTTPClient)
	return &scaleParts{settings: settings, scale: sc, azdo: client, ecs: ecs.NewFromConfig(awsCfg), rate: rate}, log, nil
}

func scaleCommand(ctx context.Context, s *streams, args []string) error {
	fs, given, scaleGiven := scaleFlags(s)
	check := fs.Bool("check", false, "check the settings, server, pool, cluster and task definition, then exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	defer stop()
	masker := logging.NewMasker()
	parts, early, err := buildScale(ctx, s, given(), scaleGiven(), masker)
	if err != nil {
		return err
	}
	if *check {
		return runScaleCheck(ctx, s, parts)
	}
	log := early
	sc, err := scale.New(ctx, scale.Config{Settings: parts.settings, Scale: parts.scale, AzDO: parts.azdo, ECS: parts.ecs, Logger: log,
		Metrics: metrics.New(s.out), Rate: parts.rate, StateDir: parts.settings.StateDir})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		early.Error("the scaler cannot start", "err", err, "exit_code", exit.Code(err))
		return reported{err}
	}
	return sc.Run(ctx)
}

// runScaleCheck prints one line per check and returns the first failure.
func runScaleCheck(ctx context.Context, s *streams, p *scaleParts) error {
	steps := []struct {
		name string
		fn   func() (string, error)
	}{
		{"settings", func() (string, error) {
			return fmt.Sprintf("pool %s, cluster %s, task definition %s, container %s, mode %s, max %d", p.settings.Pool, p.scale.Cluster, p.scale.TaskDefinition, p.scale.Container, p.scale.Mode, p.scale.Max), nil
		}},
		{"capabilities", func() (string, error) {
			c, err := scale.ParseCapabilities(p.scale.Capabilities)
			if err != nil {
				return "", exit.Config(fmt.Errorf("AZP_SCALE_CAPABILITIES: %w", err))
			}
			if _, err := scale.ParseStandby(p.scale.Standby, p.scale.Timezone); err != nil {
				return "", exit.Config(fmt.Errorf("AZP_SCALE_STANDBY: %w", err))
			}
			return strings.Join(c.Names(), ","), nil
		}},
		{"server", func() (string, error) { return p.azdo.Connect(ctx) }},
		{"pool", func() (string, error) {
			pool, err := p.azdo.Pool(ctx, p.settings.Pool)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s (id %d)", pool.Name, pool.ID), p.azdo.CanManage(ctx, pool.ID)
		}},
		{"ecs", func() (string, error) {
			td, err := scale.CheckECS(ctx, p.ecs, p.scale)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("cluster %s active; %s has container %s", p.scale.Cluster, *td.TaskDefinitionArn, p.scale.Container), nil
		}},
	}
	for _, st := range steps {
		detail, err := st.fn()
		if err != nil {
			fmt.Fprintf(s.out, "FAIL %-12s %v\n", st.name, err)
			return reported{err}
		}
		fmt.Fprintf(s.out, "ok   %-12s %s\n", st.name, detail)
	}
	fmt.Fprintln(s.out, "ok   (subnets are not checked)")
	return nil
}

// isScaleCheck reports whether `check` is about a scaler: scale settings are given.
func isScaleCheck(s *streams, args []string) bool {
	if v, ok := s.env("AZP_SCALE_CLUSTER"); ok && strings.TrimSpace(v) != "" {
		return true
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--scale-") || strings.HasPrefix(a, "-scale-") {
			return true
		}
	}
	return false
}

// scaleCheckCommand is `check` for a scaler: the same as `scale --check`.
func scaleCheckCommand(ctx context.Context, s *streams, args []string) error {
	return scaleCommand(ctx, s, append([]string{"--check"}, args...))
}

// scaleHealth answers `health` for a scaler container: 0 while its loop ran within three
// minutes. handled is false when the state directory holds no scaler state.
func scaleHealth(s *streams, dir string) (handled bool, err error) {
	last, err := scale.Health(dir, time.Now())
	if errors.Is(err, scale.ErrNoScaler) {
		return false, nil
	}
	if err != nil {
		fmt.Fprintln(s.out, "unhealthy:", err)
		return true, reported{errors.New("unhealthy")}
	}
	fmt.Fprintf(s.out, "healthy: scaler loop ran at %s\n", last.UTC().Format(time.RFC3339))
	return true, nil
}

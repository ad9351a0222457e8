// Package cli is the command line of azp-entrypoint: it parses a command and its flags, builds the
// pieces that command needs, runs it, and maps the outcome to the contract's exit code. It holds no
// lifecycle logic of its own.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
	"github.com/azp-entrypoint/azp-entrypoint/internal/nodump"
	"github.com/azp-entrypoint/azp-entrypoint/internal/version"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	usage   string
	run     func(ctx context.Context, io *streams, args []string) error
}

type streams struct {
	out, err io.Writer
	env      config.Env
}

var commands []command

func init() {
	commands = []command{
		{"run", "the whole lifecycle: configure, supervise, drain and deregister the agent (default)",
			"azp-entrypoint [run] [--once] [flags]", runCommand},
		{"install", "bake an agent package into an image at build time (no token needed)",
			"azp-entrypoint install --version V [--platform RID] [--dir D] [--sha256 H] [--url U]", installCommand},
		{"check", "preflight: settings, credentials, server, pool, permissions, package, work directory; registers nothing",
			"azp-entrypoint check [flags]", checkCommand},
		{"health", "container health check: 0 while the listener is connected or runs a job, else 1",
			"azp-entrypoint health [--state-dir D]", healthCommand},
		{"prune", "delete offline agents of the pool whose containers were killed",
			"azp-entrypoint prune [--prefix P | --all-offline] [--offline-for D] [--dry-run] [flags]", pruneCommand},
		scaleCmd, // scale.go
		{"version", "print version, commit and Go version (also --version)", "azp-entrypoint version | azp-entrypoint --version", versionCommand},
	}
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	return MainEnv(args, stdout, stderr, config.OSEnv)
}

// MainEnv is Main with an explicit environment, for tests.
func MainEnv(args []string, stdout, stderr io.Writer, env config.Env) int {
	// Every subcommand's first action (cmd/azp-entrypoint imports nodump, whose init already did
	// it; this covers other callers): non-dumpable, no secret left in the environment block.
	if err := nodump.Apply(); err != nil {
		fmt.Fprintf(stderr, "azp-entrypoint: warning: %v (a process of the same user may read this one's environment)\n", err)
	}
	name := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		name, args = "version", args[1:]
	}
	if name == "help" {
		usage(stdout)
		return exit.OK
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == name {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "azp-entrypoint: unknown command %q\n\n", name)
		usage(stderr)
		return exit.Usage
	}
	err := cmd.run(context.Background(), &streams{out: stdout, err: stderr, env: env}, args)
	if errors.Is(err, flag.ErrHelp) {
		return exit.OK
	}
	if err != nil && !errors.Is(err, errReported) {
		fmt.Fprintf(stderr, "azp-entrypoint %s: %v\n", name, err)
	}
	return exit.Code(err)
}

// errReported marks an error whose message has already been logged.
var errReported = errors.New("reported")

type reported struct{ err error }

func (r reported) Error() string   { return r.err.Error() }
func (r reported) Unwrap() []error { return []error{r.err, errReported} }

func usage(w io.Writer) {
	fmt.Fprintln(w, "azp-entrypoint: PID 1 for self-hosted Azure Pipelines agents in containers")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `azp-entrypoint COMMAND --help` for a command's flags and settings.")
}

// newFlags makes a command's flag set; withSettings adds every setting.
func newFlags(c string, s *streams, withSettings bool) (*flag.FlagSet, func() map[string]string) {
	fs := flag.NewFlagSet(c, flag.ContinueOnError)
	fs.SetOutput(s.err)
	var given func() map[string]string
	if withSettings {
		values := config.FlagSet(fs)
		given = func() map[string]string { return ownValues(values()) }
	}
	fs.Usage = func() {
		for _, cmd := range commands {
			if cmd.name == c {
				fmt.Fprintf(s.out, "%s\n\n%s\n", cmd.usage, cmd.summary)
			}
		}
		if withSettings {
			fmt.Fprintln(s.out, "\nSettings (each has a flag and an environment variable):")
			fmt.Fprint(s.out, config.Help())
		}
		own := false
		fs.VisitAll(func(f *flag.Flag) {
			// The settings table above lists the settings' flags; a command without settings may
			// reuse a setting's flag name for its own flag (install --url, health --state-dir).
			if _, isSetting := config.FlagDefinition(f.Name); isSetting && withSettings {
				return
			}
			if !own {
				fmt.Fprintln(s.out, "\nFlags:")
				own = true
			}
			fmt.Fprintf(s.out, "  --%s\n        %s (default %q)\n", f.Name, f.Usage, f.DefValue)
		})
	}
	return fs, given
}

// parse parses flags, rejecting stray positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exit.Config(err)
	}
	if fs.NArg() > 0 {
		return exit.Config(fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0)))
	}
	return nil
}

// logger builds the masked logger from the settings that exist before resolution finishes: log
// format and level are read from flags and environment directly, so that resolution errors are
// already logged in the right format.
func earlyLogger(s *streams, given map[string]string, m *logging.Masker) *slog.Logger {
	get := func(env string) string {
		if v, ok := given[env]; ok {
			return v
		}
		v, _ := s.env(env)
		return v
	}
	return logging.New(s.out, logging.Options{Format: get("AZP_LOG_FORMAT"), Level: get("AZP_LOG_LEVEL")}, m)
}

func versionCommand(_ context.Context, s *streams, args []string) error {
	fs, _ := newFlags("version", s, false)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(s.out, version.String())
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/pkgbuild"
)

const usage = `usage: azp-sim <command> [flags]

  serve            run the simulator until SIGINT/SIGTERM; prints the organisation URL first
  build-package    build a fake agent package (.tar.gz)
  jobs queue|list|cancel
  agents list|delete|enable|disable
  fault add|clear
  update           send AgentRefresh (self-update) to an agent
  script           send a SimScript message to an agent, e.g. --json '{"exit":2}'
  pools add        add a pool
  tokens add       add a PAT/bearer token with a scope
  log              print the request log

Client commands take --url (the simulator or organisation URL; default $AZP_SIM_URL).
Run "azp-sim <command> -h" for its flags.
`

func runCLI(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("missing command")
	}
	cmd, rest := args[0], args[1:]
	sub := func() (string, []string) {
		if len(rest) == 0 {
			return "", nil
		}
		return rest[0], rest[1:]
	}
	switch cmd {
	case "serve":
		return serve(rest)
	case "build-package":
		return buildPackage(rest)
	case "jobs":
		s, r := sub()
		switch s {
		case "queue":
			return jobsQueue(r)
		case "list":
			return jobsList(r)
		case "cancel":
			return jobsCancel(r)
		}
		return fmt.Errorf("jobs: want queue, list or cancel")
	case "agents":
		s, r := sub()
		switch s {
		case "list":
			return agentsList(r)
		case "delete":
			return agentsDelete(r)
		case "enable", "disable":
			return agentsEnable(r, s == "enable")
		}
		return fmt.Errorf("agents: want list, delete, enable or disable")
	case "fault":
		s, r := sub()
		switch s {
		case "add":
			return faultAdd(r)
		case "clear":
			return faultClear(r)
		}
		return fmt.Errorf("fault: want add or clear")
	case "update":
		return update(rest)
	case "script":
		return script(rest)
	case "pools":
		if s, r := sub(); s == "add" {
			return poolsAdd(r)
		}
		return fmt.Errorf("pools: want add")
	case "tokens":
		if s, r := sub(); s == "add" {
			return tokensAdd(r)
		}
		return fmt.Errorf("tokens: want add")
	case "log":
		return requestLog(rest)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	org := fs.String("org", "sim", "organisation name (first path segment of the org URL)")
	var pools, tokens, versions multiFlag
	fs.Var(&pools, "pool", "pool name (repeatable; default Default)")
	fs.Var(&tokens, "token", "PAT with manage scope (repeatable; also $AZP_SIM_TOKEN)")
	fs.Var(&versions, "package-version", "register fake agent packages of this version for linux-x64, linux-arm64, linux-musl-x64, linux-musl-arm64 (repeatable)")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a generated certificate")
	caOut := fs.String("ca-out", "", "with --tls: write the CA certificate (PEM) to this file")
	filler := fs.Int64("filler-bytes", 0, "filler bytes per package")
	pkgDir := fs.String("package-dir", "", "where packages are built (default: a temporary directory)")
	poll := fs.Duration("poll-timeout", 0, "long-poll length of GET messages (default the simulator's)")
	offline := fs.Duration("offline-after", 0, "agent offline this long after its last poll (default the simulator's)")
	verbose := fs.Bool("v", false, "log requests to stderr")
	ecs := ecsFlags(fs) // local ECS control plane (ecs.go)
	if err := fs.Parse(args); err != nil {
		return err
	}
	toks := map[string]string{}
	for _, t := range tokens {
		toks[t] = sim.ScopeManage
	}
	if t := os.Getenv("AZP_SIM_TOKEN"); t != "" {
		toks[t] = sim.ScopeManage
	}
	opts := sim.Options{Org: *org, Pools: pools, Addr: *addr, TLS: *useTLS, Tokens: toks, PollTimeout: *poll, OfflineAfter: *offline}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	srv := sim.New(opts)
	orgURL, err := srv.Start()
	if err != nil {
		return fmt.Errorf("start simulator on %s: %w", *addr, err)
	}
	defer srv.Close()
	defer ecs.mustStart(srv, tokens, pools)()
	if len(versions) > 0 {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		dir := *pkgDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "azp-sim-packages-"); err != nil {
				return err
			}
			defer os.RemoveAll(dir)
		}
		for _, v := range versions {
			for _, p := range pkgbuild.Platforms {
				res, err := pkgbuild.Build(pkgbuild.Options{Version: v, Platform: p, AgentBinary: self, OutDir: dir, FillerBytes: *filler})
				if err != nil {
					return err
				}
				if err := srv.AddPackage(sim.PackageSpec{Version: v, Platform: p, FilePath: res.Path, SHA256: res.SHA256, Filename: res.Filename}); err != nil {
					return fmt.Errorf("register package %s: %w", res.Filename, err)
				}
			}
		}
	}
	fmt.Println(orgURL)
	fmt.Fprintf(os.Stderr, "azp-sim: organisation URL %s, control API %s/_sim/\n", orgURL, srv.URL())
	if *useTLS && *caOut != "" {
		if err := os.WriteFile(*caOut, srv.CACertPEM(), 0o644); err != nil {
			return fmt.Errorf("write --ca-out: %w", err)
		}
		fmt.Fprintf(os.Stderr, "azp-sim: CA certificate in %s\n", *caOut)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "azp-sim: stopping")
	return nil
}

func buildPackage(args []string) error {
	fs := flag.NewFlagSet("build-package", flag.ContinueOnError)
	version := fs.String("version", "", "agent version, e.g. 4.261.0 (required)")
	platform := fs.String("platform", "linux-x64", "platform (runtime identifier)")
	out := fs.String("out", ".", "output directory")
	filler := fs.Int64("filler-bytes", 0, "filler bytes")
	fillerDir := fs.String("filler-dir", "", "directory tree to include as filler")
	variant := fs.String("variant", "", "bad variant: "+variantNames())
	binary := fs.String("agent-binary", "", "fake agent binary (default: this executable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		*binary = self
	}
	res, err := pkgbuild.Build(pkgbuild.Options{Version: *version, Platform: *platform, AgentBinary: *binary, OutDir: *out,
		FillerBytes: *filler, FillerDir: *fillerDir, Variant: pkgbuild.Variant(*variant)})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func variantNames() string {
	var n []string
	for _, v := range pkgbuild.Variants {
		n = append(n, string(v))
	}
	return strings.Join(n, ", ")
}

// clientFlags adds --url and returns a function that builds the control client after parsing.
func clientFlags(fs *flag.FlagSet) func() *sim.ControlClient {
	u := fs.String("url", os.Getenv("AZP_SIM_URL"), "simulator or organisation URL (default $AZP_SIM_URL)")
	ca := fs.String("cacert", "", "CA certificate (PEM) of a --tls simulator")
	return func() *sim.ControlClient {
		hc := http.DefaultClient
		if *ca != "" {
			if c, err := caClient(*ca); err == nil {
				hc = c
			} else {
				fmt.Fprintln(os.Stderr, "azp-sim:", err)
			}
		}
		return sim.NewControlClient(*u, hc)
	}
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

func parse(fs *flag.FlagSet, args []string, client func() *sim.ControlClient) (*sim.ControlClient, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if f := fs.Lookup("url"); f == nil || f.Value.String() == "" {
		return nil, errors.New("--url (or AZP_SIM_URL) is required")
	}
	return client(), nil
}

func jobsQueue(args []string) error {
	fs := flag.NewFlagSet("jobs queue", flag.ContinueOnError)
	mk := clientFlags(fs)
	var spec sim.JobSpec
	fs.StringVar(&spec.Pool, "pool", "", "pool (default: the first pool)")
	fs.StringVar(&spec.Agent, "agent", "", "only this agent may take the job")
	fs.StringVar(&spec.Name, "name", "", "job display name")
	fs.DurationVar(&spec.Duration, "duration", 5*time.Second, "how long the fake job runs")
	fs.StringVar(&spec.Result, "result", "succeeded", "succeeded or failed")
	fs.IntVar(&spec.Orphans, "orphans", 0, "processes the job leaves behind")
	fs.DurationVar(&spec.IgnoreCancel, "ignore-cancel", 0, "how long the job ignores a cancel")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	id, err := c.QueueJob(cx, spec)
	if err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}

func jobsList(args []string) error {
	fs := flag.NewFlagSet("jobs list", flag.ContinueOnError)
	mk := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	reqs, err := c.Requests(cx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(reqs)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPOOL\tAGENT\tNAME\tQUEUED\tASSIGNED\tRECEIVED\tFINISHED\tRESULT")
	for _, r := range reqs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Pool, dash(r.AgentName), r.Name,
			clock(r.QueueTime), clock(r.AssignTime), clock(r.ReceiveTime), clock(r.FinishTime), dash(r.Result))
	}
	return tw.Flush()
}

func jobsCancel(args []string) error {
	fs := flag.NewFlagSet("jobs cancel", flag.ContinueOnError)
	mk := clientFlags(fs)
	id := fs.Int64("id", 0, "request id")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	return c.CancelJob(cx, *id)
}

func agentsList(args []string) error {
	fs := flag.NewFlagSet("agents list", flag.ContinueOnError)
	mk := clientFlags(fs)
	pool := fs.String("pool", "", "pool (default: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	agents, err := c.Agents(cx, *pool)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(agents)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPOOL\tNAME\tSTATUS\tENABLED\tSINCE\tJOB\tVERSION")
	for _, a := range agents {
		job := "-"
		if a.AssignedRequestID != 0 {
			job = fmt.Sprint(a.AssignedRequestID)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%t\t%s\t%s\t%s\n", a.ID, a.Pool, a.Name, a.Status, a.Enabled, clock(a.StatusChangedOn), job, dash(a.Version))
	}
	return tw.Flush()
}

func agentsDelete(args []string) error {
	fs := flag.NewFlagSet("agents delete", flag.ContinueOnError)
	mk := clientFlags(fs)
	pool := fs.String("pool", "", "pool")
	name := fs.String("name", "", "agent name")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	return c.DeleteAgent(cx, *pool, *name)
}

func agentsEnable(args []string, enabled bool) error {
	fs := flag.NewFlagSet("agents enable", flag.ContinueOnError)
	mk := clientFlags(fs)
	pool := fs.String("pool", "", "pool")
	name := fs.String("name", "", "agent name")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	return c.SetAgentEnabled(cx, *pool, *name, enabled)
}

func faultAdd(args []string) error {
	fs := flag.NewFlagSet("fault add", flag.ContinueOnError)
	mk := clientFlags(fs)
	var f sim.FaultSpec
	fs.StringVar(&f.Method, "method", "", "HTTP method (default any)")
	fs.StringVar(&f.PathRegexp, "path", "", "regular expression on the URL path (default any)")
	fs.IntVar(&f.Status, "status", 0, "answer with this status")
	fs.IntVar(&f.Count, "count", 0, "times to apply (0 = until cleared)")
	fs.DurationVar(&f.Delay, "delay", 0, "delay before answering")
	fs.DurationVar(&f.RetryAfter, "retry-after", 0, "Retry-After header")
	fs.BoolVar(&f.Drop, "drop", false, "drop the connection")
	fs.StringVar(&f.Body, "body", "", "answer body (default the service's JSON error)")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	id, err := c.Fault(cx, f)
	if err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}

func faultClear(args []string) error {
	fs := flag.NewFlagSet("fault clear", flag.ContinueOnError)
	mk := clientFlags(fs)
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	if err := c.ClearFaults(cx); err != nil {
		return err
	}
	return c.ClearRateLimits(cx)
}

func update(args []string) error {
	fs := flag.NewFlagSet("update", flag.ContinueOnError)
	mk := clientFlags(fs)
	agent := fs.String("agent", "", "agent name")
	version := fs.String("version", "", "target version")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	return c.RequestUpdate(cx, *agent, *version)
}

func script(args []string) error {
	fs := flag.NewFlagSet("script", flag.ContinueOnError)
	mk := clientFlags(fs)
	agent := fs.String("agent", "", "agent name")
	body := fs.String("json", "", `script, e.g. {"exit":2}, {"hang":true}, {"crash":true}, {"crash":"segv"}`)
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(*body), &m); err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	cx, cancel := ctx()
	defer cancel()
	return c.Script(cx, *agent, m)
}

func poolsAdd(args []string) error {
	fs := flag.NewFlagSet("pools add", flag.ContinueOnError)
	mk := clientFlags(fs)
	name := fs.String("name", "", "pool name")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	id, err := c.AddPool(cx, *name)
	if err != nil {
		return err
	}
	fmt.Println(id)
	return nil
}

func tokensAdd(args []string) error {
	fs := flag.NewFlagSet("tokens add", flag.ContinueOnError)
	mk := clientFlags(fs)
	token := fs.String("token", "", "token")
	scope := fs.String("scope", sim.ScopeManage, "manage or read")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	return c.AddToken(cx, *token, *scope)
}

func requestLog(args []string) error {
	fs := flag.NewFlagSet("log", flag.ContinueOnError)
	mk := clientFlags(fs)
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	l, err := c.RequestLog(cx)
	if err != nil {
		return err
	}
	return printJSON(l)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05")
}

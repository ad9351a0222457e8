package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

// The client commands: they drive a running simulator over its /_sim/ control API.

// clientFlags adds --url and returns a function that builds the control client after parsing.
func (a *app) clientFlags(fs *flag.FlagSet) func() *sim.ControlClient {
	u := fs.String("url", os.Getenv("AZP_SIM_URL"), "simulator or organisation URL (default $AZP_SIM_URL)")
	ca := fs.String("cacert", "", "CA certificate (PEM) of a --tls simulator")
	return func() *sim.ControlClient {
		hc := http.DefaultClient
		if *ca != "" {
			if c, err := caClient(*ca); err == nil {
				hc = c
			} else {
				fmt.Fprintln(a.err, "azp-sim:", err)
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

func (a *app) jobsQueue(args []string) error {
	fs := a.flags("jobs queue")
	mk := a.clientFlags(fs)
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
	fmt.Fprintln(a.out, id)
	return nil
}

func (a *app) jobsList(args []string) error {
	fs := a.flags("jobs list")
	mk := a.clientFlags(fs)
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
		return a.printJSON(reqs)
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPOOL\tAGENT\tNAME\tQUEUED\tASSIGNED\tRECEIVED\tFINISHED\tRESULT")
	for _, r := range reqs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Pool, dash(r.AgentName), r.Name,
			clock(r.QueueTime), clock(r.AssignTime), clock(r.ReceiveTime), clock(r.FinishTime), dash(r.Result))
	}
	return tw.Flush()
}

func (a *app) jobsCancel(args []string) error {
	fs := a.flags("jobs cancel")
	mk := a.clientFlags(fs)
	id := fs.Int64("id", 0, "request id")
	c, err := parse(fs, args, mk)
	if err != nil {
		return err
	}
	cx, cancel := ctx()
	defer cancel()
	return c.CancelJob(cx, *id)
}

func (a *app) agentsList(args []string) error {
	fs := a.flags("agents list")
	mk := a.clientFlags(fs)
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
		return a.printJSON(agents)
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
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

func (a *app) agentsDelete(args []string) error {
	fs := a.flags("agents delete")
	mk := a.clientFlags(fs)
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

func (a *app) agentsEnable(args []string, enabled bool) error {
	fs := a.flags("agents enable")
	mk := a.clientFlags(fs)
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

func (a *app) faultAdd(args []string) error {
	fs := a.flags("fault add")
	mk := a.clientFlags(fs)
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
	fmt.Fprintln(a.out, id)
	return nil
}

func (a *app) faultClear(args []string) error {
	fs := a.flags("fault clear")
	mk := a.clientFlags(fs)
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

func (a *app) update(args []string) error {
	fs := a.flags("update")
	mk := a.clientFlags(fs)
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

func (a *app) script(args []string) error {
	fs := a.flags("script")
	mk := a.clientFlags(fs)
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

func (a *app) poolsAdd(args []string) error {
	fs := a.flags("pools add")
	mk := a.clientFlags(fs)
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
	fmt.Fprintln(a.out, id)
	return nil
}

func (a *app) tokensAdd(args []string) error {
	fs := a.flags("tokens add")
	mk := a.clientFlags(fs)
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

func (a *app) requestLog(args []string) error {
	fs := a.flags("log")
	mk := a.clientFlags(fs)
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
	return a.printJSON(l)
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
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

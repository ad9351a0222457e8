package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
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

func (a *app) run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(a.err, usage)
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
		return a.serve(rest)
	case "build-package":
		return a.buildPackage(rest)
	case "jobs":
		s, r := sub()
		switch s {
		case "queue":
			return a.jobsQueue(r)
		case "list":
			return a.jobsList(r)
		case "cancel":
			return a.jobsCancel(r)
		}
		return fmt.Errorf("jobs: want queue, list or cancel")
	case "agents":
		s, r := sub()
		switch s {
		case "list":
			return a.agentsList(r)
		case "delete":
			return a.agentsDelete(r)
		case "enable", "disable":
			return a.agentsEnable(r, s == "enable")
		}
		return fmt.Errorf("agents: want list, delete, enable or disable")
	case "fault":
		s, r := sub()
		switch s {
		case "add":
			return a.faultAdd(r)
		case "clear":
			return a.faultClear(r)
		}
		return fmt.Errorf("fault: want add or clear")
	case "update":
		return a.update(rest)
	case "script":
		return a.script(rest)
	case "pools":
		if s, r := sub(); s == "add" {
			return a.poolsAdd(r)
		}
		return fmt.Errorf("pools: want add")
	case "tokens":
		if s, r := sub(); s == "add" {
			return a.tokensAdd(r)
		}
		return fmt.Errorf("tokens: want add")
	case "log":
		return a.requestLog(rest)
	case "-h", "--help", "help":
		fmt.Fprint(a.out, usage)
		return nil
	}
	fmt.Fprint(a.err, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// app is the command line's world: where output goes and what ends `serve`. main passes the
// process's streams and SIGINT/SIGTERM; tests pass buffers and a context they cancel.
type app struct {
	out, err    io.Writer
	stopContext func() (context.Context, context.CancelFunc)
}

// flags is a flag set whose usage and errors go to the app's error stream.
func (a *app) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.err)
	return fs
}

type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }

func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

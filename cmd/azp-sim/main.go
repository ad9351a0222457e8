// Command azp-sim is the local Azure DevOps simulator and the fake Azure Pipelines agent, in one
// multi-call binary: run as bin/Agent.Listener or bin/Agent.Worker (or with argv[1] fake-listener,
// fake-worker, fake-updater, fake-orphan) it is the fake agent; otherwise it serves the simulator
// (`azp-sim serve`), drives a running one over its /_sim/ control API, or builds fake agent packages.
//
// It exists for demos, tests and image smoke tests. It is never part of the product image, and the
// product binary never imports anything it uses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim/fakeagent"
)

func main() {
	os.Exit(dispatch(os.Args))
}

func dispatch(args []string) int {
	if len(args) > 1 {
		switch args[1] {
		case fakeagent.RoleListener:
			return fakeagent.ListenerMain(args[2:])
		case fakeagent.RoleWorker:
			return fakeagent.WorkerMain(args[2:])
		case fakeagent.RoleUpdater:
			return fakeagent.UpdaterMain(args[2:])
		case fakeagent.RoleOrphan:
			return fakeagent.OrphanMain(args[2:])
		}
	}
	switch filepath.Base(args[0]) {
	case "Agent.Listener":
		return fakeagent.ListenerMain(args[1:])
	case "Agent.Worker":
		return fakeagent.WorkerMain(args[1:])
	}
	a := &app{out: os.Stdout, err: os.Stderr, stopContext: func() (context.Context, context.CancelFunc) {
		return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	}}
	return a.main(args[1:])
}

// main runs a command and returns the exit code: 0, also for -h/--help, else 1.
func (a *app) main(args []string) int {
	err := a.run(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(a.err, "azp-sim:", err)
	return 1
}

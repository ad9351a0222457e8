// Command azp-sim is the local Azure DevOps simulator and the fake Azure Pipelines agent, in one
// multi-call binary: run as bin/Agent.Listener or bin/Agent.Worker (or with argv[1] fake-listener,
// fake-worker, fake-updater, fake-orphan) it is the fake agent; otherwise it serves the simulator
// (`azp-sim serve`), drives a running one over its /_sim/ control API, or builds fake agent packages.
//
// It exists for demos, tests and image smoke tests. It is never part of the product image, and the
// product binary never imports anything it uses.
package main

import (
	"fmt"
	"os"
	"path/filepath"

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
	if err := runCLI(args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "azp-sim:", err)
		return 1
	}
	return 0
}

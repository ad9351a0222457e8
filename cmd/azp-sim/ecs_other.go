//go:build !linux

package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

type ecsServe struct{ addr string }

func ecsFlags(fs *flag.FlagSet) *ecsServe {
	e := &ecsServe{}
	fs.StringVar(&e.addr, "ecs-addr", "", "local ECS control plane (Linux only)")
	return e
}

func (e *ecsServe) mustStart(*sim.Server, []string, []string) func() {
	if e.addr != "" {
		fmt.Fprintln(os.Stderr, "azp-sim: the local ECS runs tasks in PID namespaces and needs Linux")
		os.Exit(1)
	}
	return func() {}
}

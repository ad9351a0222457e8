// Command azp-entrypoint is the PID 1 of a self-hosted Azure Pipelines agent container: it resolves
// settings and credentials, installs and supervises the agent, drains and deregisters it on stop.
// See README.md for the commands and settings.
package main

import (
	// First: marks the process non-dumpable and scrubs secrets from its environment block before
	// anything else initialises, for every subcommand (health, check, prune, version, install,
	// run). See internal/nodump.
	_ "github.com/azp-entrypoint/azp-entrypoint/internal/nodump"

	"os"

	"github.com/azp-entrypoint/azp-entrypoint/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

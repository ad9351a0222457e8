//go:build ignore

// gen-settings-table prints the README's settings table from internal/config's definitions, so
// the two cannot drift: `go run scripts/gen-settings-table.go`.
package main

import (
	"fmt"
	"strings"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
)

func main() {
	fmt.Println("| variable | flag | default | meaning |")
	fmt.Println("|---|---|---|---|")
	for _, d := range config.Definitions() {
		name := "`" + d.Env + "`"
		if d.StartSh {
			name += " *start.sh*"
		}
		def := d.Default
		if def == "" {
			def = " "
		} else {
			def = "`" + def + "`"
		}
		fmt.Printf("| %s | `--%s` | %s | %s |\n", name, d.Flag, def, strings.ReplaceAll(d.Usage, "|", "\\|"))
	}
}

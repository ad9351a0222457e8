package config

import (
	"os"
	"strings"
	"testing"
)

// The README's settings table is generated from the definitions (scripts/gen-settings-table.go);
// this keeps it from drifting when a setting is added or renamed.
func TestREADMEListsEverySetting(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, d := range Definitions() {
		row := "| `" + d.Env + "`"
		i := strings.Index(readme, row)
		if i < 0 {
			t.Errorf("README settings table lacks %s (run go run scripts/gen-settings-table.go)", d.Env)
			continue
		}
		line := readme[i : i+strings.Index(readme[i:], "\n")]
		if !strings.Contains(line, "`--"+d.Flag+"`") {
			t.Errorf("README row of %s lacks --%s: %s", d.Env, d.Flag, line)
		}
		if d.Default != "" && !strings.Contains(line, "`"+d.Default+"`") {
			t.Errorf("README row of %s lacks the default %q: %s", d.Env, d.Default, line)
		}
	}
}

package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

func TestResolveScale(t *testing.T) {
	env := func(m map[string]string) Env {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	base := &Settings{AgentNamePrefix: "linux-"}
	good := map[string]string{"AZP_SCALE_CLUSTER": "azp", "AZP_SCALE_TASK_DEFINITION": "azp-agent:3", "AZP_SCALE_SUBNETS": "subnet-1, subnet-2",
		"AZP_SCALE_CAPACITY_PROVIDERS": "FARGATE_SPOT:3,FARGATE:1:1", "AZP_SCALE_TIMEZONE": "Europe/Berlin"}
	s, err := ResolveScale(map[string]string{"AZP_SCALE_MAX": "4"}, env(good), base)
	if err != nil {
		t.Fatal(err)
	}
	if s.Max != 4 || len(s.Subnets) != 2 || s.Container != "agent" || s.Mode != "once" || s.Interval != 5*time.Second || s.BootTimeout != 5*time.Minute ||
		!s.Placeholder || s.MaxFailedLaunches != 5 || s.IdleTimeout != 15*time.Minute || s.Timezone.String() != "Europe/Berlin" ||
		len(s.CapacityProviders) != 2 || s.CapacityProviders[0] != (CapacityProvider{"FARGATE_SPOT", 3, 0}) || s.CapacityProviders[1] != (CapacityProvider{"FARGATE", 1, 1}) {
		t.Fatalf("%+v", s)
	}
	for name, tc := range map[string]struct {
		set     map[string]string
		base    *Settings
		setting string
	}{
		"no cluster":      {set: map[string]string{"AZP_SCALE_CLUSTER": ""}, setting: "AZP_SCALE_CLUSTER"},
		"no prefix":       {base: &Settings{}, setting: "AZP_AGENT_NAME_PREFIX"},
		"long prefix":     {base: &Settings{AgentNamePrefix: strings.Repeat("p", 32)}, setting: "AZP_AGENT_NAME_PREFIX"},
		"mode":            {set: map[string]string{"AZP_SCALE_AGENT_MODE": "forever"}, setting: "AZP_SCALE_AGENT_MODE"},
		"max":             {set: map[string]string{"AZP_SCALE_MAX": "0"}, setting: "AZP_SCALE_MAX"},
		"strategy":        {set: map[string]string{"AZP_SCALE_CAPACITY_PROVIDERS": "FARGATE:x"}, setting: "AZP_SCALE_CAPACITY_PROVIDERS"},
		"two bases":       {set: map[string]string{"AZP_SCALE_CAPACITY_PROVIDERS": "FARGATE:1:1,FARGATE_SPOT:1:2"}, setting: "AZP_SCALE_CAPACITY_PROVIDERS"},
		"zone":            {set: map[string]string{"AZP_SCALE_TIMEZONE": "Mars/Olympus"}, setting: "AZP_SCALE_TIMEZONE"},
		"subnet":          {set: map[string]string{"AZP_SCALE_SUBNETS": "10.0.0.0/24"}, setting: "AZP_SCALE_SUBNETS"},
		"security group":  {set: map[string]string{"AZP_SCALE_SECURITY_GROUPS": "web"}, setting: "AZP_SCALE_SECURITY_GROUPS"},
		"interval":        {set: map[string]string{"AZP_SCALE_INTERVAL": "soon"}, setting: "AZP_SCALE_INTERVAL"},
		"boolean":         {set: map[string]string{"AZP_SCALE_PUBLIC_IP": "yes"}, setting: "AZP_SCALE_PUBLIC_IP"},
		"failed launches": {set: map[string]string{"AZP_SCALE_MAX_FAILED_LAUNCHES": "-1"}, setting: "AZP_SCALE_MAX_FAILED_LAUNCHES"},
	} {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		for k, v := range tc.set {
			m[k] = v
		}
		b := base
		if tc.base != nil {
			b = tc.base
		}
		_, err := ResolveScale(nil, env(m), b)
		if err == nil || !errors.Is(err, exit.ErrConfig) || !strings.Contains(err.Error(), tc.setting) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestREADMEListsEveryScaleSetting(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, d := range ScaleDefinitions() {
		row := "| `" + d.Env + "` | `--" + d.Flag + "` |"
		i := strings.Index(readme, row)
		if i < 0 {
			t.Errorf("README's Autoscaling on ECS table lacks %s (--%s)", d.Env, d.Flag)
			continue
		}
		line := readme[i : i+strings.Index(readme[i:], "\n")]
		if d.Default != "" && !strings.Contains(line, "`"+d.Default+"`") {
			t.Errorf("README row of %s lacks the default %q: %s", d.Env, d.Default, line)
		}
	}
}

package config

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The settings of `azp-entrypoint scale` (contract, "Scaling"). They have their own table: only
// the scale command registers and resolves them; the connection, credential, pool and
// AZP_AGENT_NAME_PREFIX settings come from the common table through Resolve.

var scaleDefinitions = []Definition{
	{Env: "AZP_SCALE_CLUSTER", Flag: "scale-cluster", Usage: "ECS cluster name or ARN (required)"},
	{Env: "AZP_SCALE_TASK_DEFINITION", Flag: "scale-task-definition", Usage: "the agent task definition: family, family:revision or ARN (required)"},
	{Env: "AZP_SCALE_CONTAINER", Flag: "scale-container", Default: "agent", Usage: "the agent container's name in the task definition"},
	{Env: "AZP_SCALE_SUBNETS", Flag: "scale-subnets", Usage: "comma-separated subnet ids for the tasks (awsvpc; required)"},
	{Env: "AZP_SCALE_SECURITY_GROUPS", Flag: "scale-security-groups", Usage: "comma-separated security group ids for the tasks"},
	{Env: "AZP_SCALE_PUBLIC_IP", Flag: "scale-public-ip", Default: "false", Usage: "assign a public IP to agent tasks", Kind: KindBool},
	{Env: "AZP_SCALE_CAPACITY_PROVIDERS", Flag: "scale-capacity-providers", Default: "FARGATE", Usage: "capacity provider strategy, e.g. FARGATE_SPOT:3,FARGATE:1 (name[:weight[:base]])"},
	{Env: "AZP_SCALE_AGENT_MODE", Flag: "scale-agent-mode", Default: "once", Usage: "once: a task runs one job and leaves; persistent: agents live across jobs and idle ones are scaled in"},
	{Env: "AZP_SCALE_MAX", Flag: "scale-max", Default: "10", Usage: "most agent tasks of this scaler at any instant (every task not yet STOPPED)"},
	{Env: "AZP_SCALE_STANDBY", Flag: "scale-standby", Default: "0", Usage: "idle agents kept ready: a number, or a weekly schedule such as `mon-fri 07:00-19:00=3, sat 09:00-13:00=1`"},
	{Env: "AZP_SCALE_TIMEZONE", Flag: "scale-timezone", Default: "UTC", Usage: "IANA time zone of the standby schedule"},
	{Env: "AZP_SCALE_CAPABILITIES", Flag: "scale-capabilities", Usage: "capabilities of the launched agents, name=value,name (set as environment variables of the agent container)"},
	{Env: "AZP_SCALE_INTERVAL", Flag: "scale-interval", Default: "5s", Usage: "job-queue poll while anything is pending or starting; slower when idle", Kind: KindDuration},
	{Env: "AZP_SCALE_BOOT_TIMEOUT", Flag: "scale-boot-timeout", Default: "5m", Usage: "a launched task whose agent is not online by then is stopped and counts as a failed launch", Kind: KindDuration},
	{Env: "AZP_SCALE_MAX_FAILED_LAUNCHES", Flag: "scale-max-failed-launches", Default: "5", Usage: "failed launches in a row after which launching pauses for one boot timeout"},
	{Env: "AZP_SCALE_PLACEHOLDER", Flag: "scale-placeholder", Default: "true", Usage: "keep one offline placeholder agent, <prefix>placeholder, so that jobs queue when no agent is online", Kind: KindBool},
	{Env: "AZP_SCALE_IDLE_TIMEOUT", Flag: "scale-idle-timeout", Default: "15m", Usage: "once mode: the AZP_IDLE_TIMEOUT tasks are launched with", Kind: KindDuration},
}

// ScaleDefinitions returns the scale command's settings, in --help order.
func ScaleDefinitions() []Definition {
	out := make([]Definition, len(scaleDefinitions))
	copy(out, scaleDefinitions)
	return out
}

// CapacityProvider is one item of the capacity provider strategy.
type CapacityProvider struct {
	Name         string
	Weight, Base int
}

// ScaleSettings are the resolved AZP_SCALE_* settings.
type ScaleSettings struct {
	Cluster, TaskDefinition, Container string
	Subnets, SecurityGroups            []string
	PublicIP                           bool
	CapacityProviders                  []CapacityProvider
	Mode                               string
	Max                                int
	Standby                            string // parsed by internal/scale (ParseStandby)
	Timezone                           *time.Location
	Capabilities                       string // parsed by internal/scale (ParseCapabilities)
	Interval, BootTimeout, IdleTimeout time.Duration
	MaxFailedLaunches                  int
	Placeholder                        bool
}

// ScaleFlagSet registers the scale settings as flags and returns the given values.
func ScaleFlagSet(fs *flag.FlagSet) func() map[string]string {
	given := map[string]string{}
	for _, d := range scaleDefinitions {
		fs.Var(&flagValue{def: d, given: given}, d.Flag, d.Usage+" ["+d.Env+"]")
	}
	return func() map[string]string { return given }
}

// ScaleHelp renders the scale settings for --help.
func ScaleHelp() string {
	var b strings.Builder
	for _, d := range scaleDefinitions {
		def := d.Default
		if def == "" {
			def = "-"
		}
		b.WriteString("  --" + d.Flag + " " + d.Kind.placeholder() + "\n")
		b.WriteString("        " + d.Env + " (default " + def + "): " + d.Usage + "\n")
	}
	return b.String()
}

func scaleDef(env string) Definition {
	for _, d := range scaleDefinitions {
		if d.Env == env {
			return d
		}
	}
	panic("config: no scale setting " + env)
}

// ResolveScale applies flag > environment > default to the scale settings and validates them.
// base is the common settings' result: the scale command also needs AZP_AGENT_NAME_PREFIX.
func ResolveScale(flags map[string]string, env Env, base *Settings) (*ScaleSettings, error) {
	if env == nil {
		env = OSEnv
	}
	raw := map[string]string{}
	for _, d := range scaleDefinitions {
		if v, ok := flags[d.Env]; ok && strings.TrimSpace(v) != "" {
			raw[d.Env] = strings.TrimSpace(v)
		} else if v, ok := lookupEnv(env, d); ok {
			raw[d.Env] = strings.TrimSpace(v)
		} else {
			raw[d.Env] = d.Default
		}
	}
	s := &ScaleSettings{Cluster: raw["AZP_SCALE_CLUSTER"], TaskDefinition: raw["AZP_SCALE_TASK_DEFINITION"],
		Container: raw["AZP_SCALE_CONTAINER"], Mode: raw["AZP_SCALE_AGENT_MODE"], Standby: raw["AZP_SCALE_STANDBY"],
		Capabilities: raw["AZP_SCALE_CAPABILITIES"]}
	for _, req := range []string{"AZP_SCALE_CLUSTER", "AZP_SCALE_TASK_DEFINITION", "AZP_SCALE_SUBNETS"} {
		if raw[req] == "" {
			return nil, invalid(scaleDef(req), "", "required by the scale command", "set it in the scaler's task definition (see the README, Autoscaling on ECS)")
		}
	}
	if base == nil || strings.TrimSpace(base.AgentNamePrefix) == "" {
		d, _ := Lookup("AZP_AGENT_NAME_PREFIX")
		return nil, invalid(d, "", "required by the scale command: it names every agent the scaler launches and its placeholder", "set a short prefix unique to this scaler, e.g. linux-docker-")
	}
	// Agent names are <prefix><32-hex task id>-<container> and at most 64 characters; the
	// prefix must leave room for the whole task id (contract).
	if n := len(base.AgentNamePrefix); n > 64-33 {
		d, _ := Lookup("AZP_AGENT_NAME_PREFIX")
		return nil, invalid(d, base.AgentNamePrefix, fmt.Sprintf("%d characters leave no room for <task id>-<container> in 64", n), "use at most 31 characters")
	}
	s.Subnets = splitList(raw["AZP_SCALE_SUBNETS"])
	s.SecurityGroups = splitList(raw["AZP_SCALE_SECURITY_GROUPS"])
	var e *Error
	if s.PublicIP, e = parseBool(scaleDef("AZP_SCALE_PUBLIC_IP"), raw["AZP_SCALE_PUBLIC_IP"]); e != nil {
		return nil, e
	}
	if s.Placeholder, e = parseBool(scaleDef("AZP_SCALE_PLACEHOLDER"), raw["AZP_SCALE_PLACEHOLDER"]); e != nil {
		return nil, e
	}
	if problem, fix := oneOf("once", "persistent")(s.Mode, nil); s.Mode != "" && problem != "" {
		return nil, invalid(scaleDef("AZP_SCALE_AGENT_MODE"), s.Mode, problem, fix)
	}
	if s.Max, e = positiveInt(scaleDef("AZP_SCALE_MAX"), raw["AZP_SCALE_MAX"], 1); e != nil {
		return nil, e
	}
	if s.MaxFailedLaunches, e = positiveInt(scaleDef("AZP_SCALE_MAX_FAILED_LAUNCHES"), raw["AZP_SCALE_MAX_FAILED_LAUNCHES"], 1); e != nil {
		return nil, e
	}
	for _, x := range []struct {
		env string
		dst *time.Duration
		min time.Duration
	}{{"AZP_SCALE_INTERVAL", &s.Interval, 100 * time.Millisecond}, {"AZP_SCALE_BOOT_TIMEOUT", &s.BootTimeout, time.Second}, {"AZP_SCALE_IDLE_TIMEOUT", &s.IdleTimeout, 0}} {
		d := scaleDef(x.env)
		v, err := parseDuration(d, raw[x.env], false)
		if err != nil {
			return nil, err
		}
		if v < x.min {
			return nil, invalid(d, raw[x.env], "too short", "use at least "+x.min.String())
		}
		*x.dst = v
	}
	loc, err := time.LoadLocation(raw["AZP_SCALE_TIMEZONE"])
	if err != nil {
		return nil, invalid(scaleDef("AZP_SCALE_TIMEZONE"), raw["AZP_SCALE_TIMEZONE"], "not an IANA time zone", "use a name such as UTC, Europe/Berlin or America/New_York")
	}
	s.Timezone = loc
	if s.CapacityProviders, e = parseStrategy(raw["AZP_SCALE_CAPACITY_PROVIDERS"]); e != nil {
		return nil, e
	}
	for _, sn := range s.Subnets {
		if !strings.HasPrefix(sn, "subnet-") {
			return nil, invalid(scaleDef("AZP_SCALE_SUBNETS"), sn, "not a subnet id", "use ids such as subnet-0123456789abcdef0, comma-separated")
		}
	}
	for _, sg := range s.SecurityGroups {
		if !strings.HasPrefix(sg, "sg-") {
			return nil, invalid(scaleDef("AZP_SCALE_SECURITY_GROUPS"), sg, "not a security group id", "use ids such as sg-0123456789abcdef0, comma-separated")
		}
	}
	return s, nil
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func positiveInt(d Definition, v string, min int) (int, *Error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		return 0, invalid(d, v, "not a whole number of at least "+strconv.Itoa(min), "use a number such as "+d.Default)
	}
	return n, nil
}

// parseStrategy reads `FARGATE_SPOT:3,FARGATE:1` (name[:weight[:base]]; weight default 1). ECS
// allows base on one item only (API_CapacityProviderStrategyItem).
func parseStrategy(v string) ([]CapacityProvider, *Error) {
	d := scaleDef("AZP_SCALE_CAPACITY_PROVIDERS")
	fix := "use name[:weight[:base]] items such as FARGATE_SPOT:3,FARGATE:1:1"
	var out []CapacityProvider
	bases := 0
	seen := map[string]bool{}
	for _, item := range splitList(v) {
		parts := strings.Split(item, ":")
		if len(parts) > 3 || parts[0] == "" {
			return nil, invalid(d, v, "malformed item "+strconv.Quote(item), fix)
		}
		cp := CapacityProvider{Name: parts[0], Weight: 1}
		var err error
		if len(parts) > 1 {
			if cp.Weight, err = strconv.Atoi(parts[1]); err != nil || cp.Weight < 0 || cp.Weight > 1000 {
				return nil, invalid(d, v, "weight of "+parts[0]+" is not 0 to 1000", fix)
			}
		}
		if len(parts) > 2 {
			if cp.Base, err = strconv.Atoi(parts[2]); err != nil || cp.Base < 0 || cp.Base > 100000 {
				return nil, invalid(d, v, "base of "+parts[0]+" is not 0 to 100000", fix)
			}
			if cp.Base > 0 {
				bases++
			}
		}
		if seen[cp.Name] {
			return nil, invalid(d, v, cp.Name+" listed twice", fix)
		}
		seen[cp.Name] = true
		out = append(out, cp)
	}
	if len(out) == 0 {
		return nil, invalid(d, v, "empty", fix)
	}
	if bases > 1 {
		return nil, invalid(d, v, "only one capacity provider may have a base", fix)
	}
	total := 0
	for _, cp := range out {
		total += cp.Weight
	}
	if total == 0 {
		return nil, invalid(d, v, "every weight is 0", fix)
	}
	return out, nil
}

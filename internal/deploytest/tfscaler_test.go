package deploytest

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// scalerVars is baseVars with scaling = "scaler" and two profiles of different
// sizes and capabilities.
func scalerVars(extra map[string]any) map[string]any {
	v := baseVars(map[string]any{
		"scaling": "scaler",
		"profiles": map[string]any{
			"small": map[string]any{"cpu": 1024, "memory": 2048, "capabilities": map[string]string{"size": "small"}},
			"large": map[string]any{"cpu": 4096, "memory": 16384, "max": 4, "standby": "mon-fri 07:00-19:00=1", "timezone": "Europe/Berlin",
				"agent_mode": "persistent", "capacity_providers": "FARGATE_SPOT:3,FARGATE:1", "boot_timeout": "8m",
				"capabilities": map[string]string{"size": "large", "docker": ""}},
		},
	})
	for k, x := range extra {
		v[k] = x
	}
	return v
}

// contractScaleSettings are the scaler's settings as CONTRACT.md ("Scaling")
// lists them. The Terraform may set them before internal/config knows them (the
// scaler is built in parallel); once config defines AZP_SCALE_* settings, they
// are checked against config like every other setting.
var contractScaleSettings = []string{
	"AZP_SCALE_CLUSTER", "AZP_SCALE_TASK_DEFINITION", "AZP_SCALE_CONTAINER", "AZP_SCALE_SUBNETS",
	"AZP_SCALE_SECURITY_GROUPS", "AZP_SCALE_PUBLIC_IP", "AZP_SCALE_CAPACITY_PROVIDERS", "AZP_SCALE_AGENT_MODE",
	"AZP_SCALE_MAX", "AZP_SCALE_STANDBY", "AZP_SCALE_TIMEZONE", "AZP_SCALE_CAPABILITIES", "AZP_SCALE_INTERVAL",
	"AZP_SCALE_BOOT_TIMEOUT", "AZP_SCALE_MAX_FAILED_LAUNCHES", "AZP_SCALE_PLACEHOLDER", "AZP_SCALE_IDLE_TIMEOUT",
}

func checkScalerEnvironment(t *testing.T, where string, env map[string]string) {
	t.Helper()
	defs := settings(t)
	configKnowsScale := false
	for name := range defs {
		if strings.HasPrefix(name, "AZP_SCALE_") {
			configKnowsScale = true
		}
	}
	rest := map[string]string{}
	for name, v := range env {
		if strings.HasPrefix(name, "AZP_SCALE_") && !configKnowsScale {
			if !slices.Contains(contractScaleSettings, name) {
				t.Errorf("%s sets %s, which is not a scaler setting of the contract", where, name)
			}
			continue
		}
		rest[name] = v
	}
	checkEnvironment(t, where, rest)
}

// decodeContainers decodes a container_definitions JSON string.
func decodeContainers(t *testing.T, where string, v cty.Value) []containerDef {
	t.Helper()
	if !v.IsKnown() || v.Type() != cty.String {
		t.Fatalf("%s: container_definitions is not a known JSON string", where)
	}
	var generic []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v.AsString()), &generic); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	for _, g := range generic {
		for k := range g {
			if !slices.Contains(ecsContainerKeys, k) {
				t.Errorf("%s: container definition key %q is not an ECS ContainerDefinition field", where, k)
			}
		}
	}
	var defs []containerDef
	if err := json.Unmarshal([]byte(v.AsString()), &defs); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return defs
}

type scalerContainer struct {
	containerDef
	Command []string `json:"command"`
}

func TestScalerMode(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	c := m.plan(t, scalerVars(nil))
	for _, addr := range []string{"aws_ecs_service.agent", "aws_ecs_task_definition.agent"} {
		if n := len(c.instances(t, addr)); n != 0 {
			t.Errorf("scaler mode: %s has %d instances, want none (no service of agents)", addr, n)
		}
	}
	tds := c.instances(t, "aws_ecs_task_definition.profile")
	svcs := c.instances(t, "aws_ecs_service.scaler")
	stds := c.instances(t, "aws_ecs_task_definition.scaler")
	if len(tds) != 2 || len(svcs) != 2 || len(stds) != 2 || len(c.instances(t, "aws_iam_role.scaler")) != 2 {
		t.Fatalf("two profiles: want 2 agent task definitions, scaler task definitions, services and roles; got %d, %d, %d", len(tds), len(stds), len(svcs))
	}

	size := map[string][2]int64{"small": {1024, 2048}, "large": {4096, 16384}}
	families := map[string]bool{}
	for _, td := range tds {
		fam := td.str("family")
		families[fam] = true
		key := strings.TrimPrefix(fam, "azp-agent-")
		want, ok := size[key]
		if !ok {
			t.Fatalf("agent task definition family %q is not <name>-<profile>", fam)
		}
		cpu, _ := td.attrs["cpu"].AsBigFloat().Int64()
		mem, _ := td.attrs["memory"].AsBigFloat().Int64()
		if cpu != want[0] || mem != want[1] {
			t.Errorf("%s: cpu/memory %d/%d, want %v", fam, cpu, mem, want)
		}
		if td.str("task_role_arn") != mockRef("aws_iam_role", "task", "arn") || td.str("execution_role_arn") != mockRef("aws_iam_role", "execution", "arn") {
			t.Errorf("%s: the agent tasks use the agent's task and execution roles", fam)
		}
		defs := decodeContainers(t, fam, td.attrs["container_definitions"])
		if len(defs) != 1 || defs[0].Name != "agent" {
			t.Fatalf("%s: one container named agent (AZP_SCALE_CONTAINER), got %d", fam, len(defs))
		}
		d := defs[0]
		env := d.env()
		where := fam + "/agent"
		checkEnvironment(t, where, env)
		checkAgentProcess(t, where, "root", d)
		if d.StopTimeout == nil || parseStopTimeout(t, where, env["AZP_STOP_TIMEOUT"]) != time.Duration(*d.StopTimeout)*time.Second {
			t.Errorf("%s: stopTimeout and AZP_STOP_TIMEOUT differ", where)
		}
		if env["AZP_ECS_TASK_PROTECTION"] != "false" {
			t.Errorf("%s: standalone tasks cannot be protected: AZP_ECS_TASK_PROTECTION=false", where)
		}
		if env["AZP_AGENT_NAME_PREFIX"] != "ecs-"+key+"-" {
			t.Errorf("%s: AZP_AGENT_NAME_PREFIX=%q, want ecs-%s-", where, env["AZP_AGENT_NAME_PREFIX"], key)
		}
		wantOnce := map[string]string{"small": "true", "large": "false"}[key]
		if env["AZP_ONCE"] != wantOnce {
			t.Errorf("%s: AZP_ONCE=%q, want %s for its agent mode", where, env["AZP_ONCE"], wantOnce)
		}
		if d.HealthCheck == nil || !equalStrings(d.HealthCheck.Command, healthCommand) {
			t.Errorf("%s: health check must be azp-entrypoint health", where)
		}
	}

	for _, std := range stds {
		fam := std.str("family")
		key := strings.TrimSuffix(strings.TrimPrefix(fam, "azp-agent-"), "-scaler")
		if !families["azp-agent-"+key] {
			t.Fatalf("scaler task definition %q belongs to no profile", fam)
		}
		if !std.attrs["cpu"].Equals(cty.NumberIntVal(256)).True() || !std.attrs["memory"].Equals(cty.NumberIntVal(512)).True() {
			t.Errorf("%s: the scaler runs in 0.25 vCPU / 512 MiB", fam)
		}
		if std.str("task_role_arn") != mockRef("aws_iam_role.scaler["+key+"]", "arn") {
			t.Errorf("%s: task role %q, want the profile's scaler role", fam, std.str("task_role_arn"))
		}
		var defs []scalerContainer
		if err := json.Unmarshal([]byte(std.str("container_definitions")), &defs); err != nil || len(defs) != 1 {
			t.Fatalf("%s: one scaler container: %v", fam, err)
		}
		decodeContainers(t, fam, std.attrs["container_definitions"])
		d := defs[0]
		where := fam + "/" + d.Name
		if !slices.Equal(d.Command, []string{"scale"}) {
			t.Errorf("%s: command %v, want [scale]", where, d.Command)
		}
		if d.User != "1000:1000" || d.LinuxParameters == nil || d.LinuxParameters.Capabilities == nil || len(d.LinuxParameters.Capabilities.Add) != 0 || !slices.Equal(d.LinuxParameters.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("%s: the scaler needs no privilege: user 1000:1000, capabilities drop ALL, add none", where)
		}
		if d.HealthCheck == nil || !equalStrings(d.HealthCheck.Command, healthCommand) {
			t.Errorf("%s: health check must be azp-entrypoint health (loop ran in 3 min; a paused breaker does not fail it)", where)
		}
		env := d.env()
		checkScalerEnvironment(t, where, env)
		if d.StopTimeout == nil || parseStopTimeout(t, where, env["AZP_STOP_TIMEOUT"]) != time.Duration(*d.StopTimeout)*time.Second {
			t.Errorf("%s: stopTimeout and AZP_STOP_TIMEOUT differ", where)
		}
		want := map[string]string{
			"AZP_SCALE_CLUSTER":         mockRef("aws_ecs_cluster", "this", "arn"),
			"AZP_SCALE_TASK_DEFINITION": mockRef("aws_ecs_task_definition.profile["+key+"]", "arn"),
			"AZP_SCALE_CONTAINER":       "agent",
			"AZP_SCALE_SUBNETS":         "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb",
			"AZP_SCALE_SECURITY_GROUPS": mockRef("aws_security_group", "task", "id"),
			"AZP_SCALE_PUBLIC_IP":       "false",
			"AZP_AGENT_NAME_PREFIX":     "ecs-" + key + "-",
			"AZP_SECRET_ID":             mockRef("aws_secretsmanager_secret", "azp", "arn"),
			"AZP_URL":                   "https://dev.azure.com/acme",
			"AZP_POOL":                  "Default",
		}
		perProfile := map[string]map[string]string{
			"small": {"AZP_SCALE_MAX": "10", "AZP_SCALE_STANDBY": "0", "AZP_SCALE_TIMEZONE": "UTC", "AZP_SCALE_AGENT_MODE": "once",
				"AZP_SCALE_CAPACITY_PROVIDERS": "FARGATE", "AZP_SCALE_BOOT_TIMEOUT": "5m", "AZP_SCALE_CAPABILITIES": "size=small"},
			"large": {"AZP_SCALE_MAX": "4", "AZP_SCALE_STANDBY": "mon-fri 07:00-19:00=1", "AZP_SCALE_TIMEZONE": "Europe/Berlin",
				"AZP_SCALE_AGENT_MODE": "persistent", "AZP_SCALE_CAPACITY_PROVIDERS": "FARGATE_SPOT:3,FARGATE:1",
				"AZP_SCALE_BOOT_TIMEOUT": "8m", "AZP_SCALE_CAPABILITIES": "docker,size=large"},
		}
		for k, v := range perProfile[key] {
			want[k] = v
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", where, k, env[k], v)
			}
		}
	}

	for _, svc := range svcs {
		name := svc.str("name")
		key := strings.TrimSuffix(strings.TrimPrefix(name, "azp-agent-"), "-scaler")
		if !svc.attrs["desired_count"].Equals(cty.NumberIntVal(1)).True() {
			t.Errorf("%s: one scaler task", name)
		}
		if !svc.attrs["deployment_maximum_percent"].Equals(cty.NumberIntVal(100)).True() || !svc.attrs["deployment_minimum_healthy_percent"].Equals(cty.NumberIntVal(0)).True() {
			t.Errorf("%s: deployments must never run two scalers at once (max 100%%, min 0%%)", name)
		}
		if svc.str("task_definition") != mockRef("aws_ecs_task_definition.scaler["+key+"]", "arn") {
			t.Errorf("%s: task_definition %q, want the profile's scaler task definition", name, svc.str("task_definition"))
		}
		strat := svc.all("capacity_provider_strategy")
		if len(strat) != 1 || strat[0].str("capacity_provider") != "FARGATE" {
			t.Errorf("%s: the scaler runs on on-demand FARGATE only", name)
		}
		// A paused launch breaker must not make ECS replace the scaler: no
		// deployment alarm, and the health check is the loop's liveness only.
		if len(svc.all("alarms")) != 0 {
			t.Errorf("%s: no deployment alarms on the scaler service (a failed-launch alarm would replace it)", name)
		}
		if ex := svc.attrs["enable_execute_command"]; !ex.IsNull() && ex.True() {
			t.Errorf("%s: ECS Exec must be off", name)
		}
	}
}

func TestScalerModeRefusesWhatItCannotRun(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	bad := []struct {
		name string
		set  map[string]any
		want string
	}{
		{"EBS storage", map[string]any{"storage_mode": "ebs"}, "storage_mode"},
		{"several agents per task", map[string]any{"agents_per_task": 2}, "agents_per_task = 1"},
		{"profile key with upper case", map[string]any{"profiles": map[string]any{"Small": map[string]any{}}}, "profiles"},
		{"no profile", map[string]any{"profiles": map[string]any{}}, "at least one"},
		{"unknown agent mode", map[string]any{"profiles": map[string]any{"a": map[string]any{"agent_mode": "forever"}}}, "agent_mode"},
		{"capacity provider typo", map[string]any{"profiles": map[string]any{"a": map[string]any{"capacity_providers": "SPOT:1"}}}, "capacity_providers"},
		{"max 0", map[string]any{"profiles": map[string]any{"a": map[string]any{"max": 0}}}, "max"},
		{"boot timeout without unit", map[string]any{"profiles": map[string]any{"a": map[string]any{"boot_timeout": "300"}}}, "boot_timeout"},
		{"capability that is a setting", map[string]any{"profiles": map[string]any{"a": map[string]any{"capabilities": map[string]string{"AZP_TOKEN": "x"}}}}, "capabilities"},
		{"agent names too long", map[string]any{"agent_name_prefix": "a-very-long-prefix-for-", "profiles": map[string]any{"abcdef": map[string]any{}}}, "64-character"},
		{"unknown container user", map[string]any{"agent_container_user": "nobody"}, "agent_container_user"},
	}
	for _, tc := range bad {
		_, err := m.tryPlan(t, scalerVars(tc.set))
		var ee *evalErr
		if !errors.As(err, &ee) {
			t.Errorf("%s: accepted, want a validation error", tc.name)
			continue
		}
		if !strings.Contains(ee.Error(), tc.want) {
			t.Errorf("%s: error %q does not say %q", tc.name, ee.Error(), tc.want)
		}
	}
	// The same settings are fine in fixed mode.
	for _, set := range []map[string]any{{"storage_mode": "ebs"}, {"agents_per_task": 2}} {
		if _, err := m.tryPlan(t, baseVars(set)); err != nil {
			t.Errorf("fixed mode refused %v: %v", set, err)
		}
	}
}

func TestFixedModeUnchanged(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	c := m.plan(t, baseVars(nil))
	for _, addr := range []string{"aws_ecs_task_definition.profile", "aws_ecs_task_definition.scaler", "aws_ecs_service.scaler", "aws_iam_role.scaler", "aws_iam_role_policy.scaler"} {
		if n := len(c.instances(t, addr)); n != 0 {
			t.Errorf("fixed mode (the default) creates %d %s", n, addr)
		}
	}
	c.only(t, "aws_ecs_service.agent")
	// Existing stacks had these as single resources: moved blocks keep them.
	moved := map[string]string{}
	for _, f := range m.files {
		for _, b := range f.Body.(*hclsyntax.Body).Blocks {
			if b.Type == "moved" {
				moved[traversalString(b.Body.Attributes["from"].Expr)] = traversalString(b.Body.Attributes["to"].Expr)
			}
		}
	}
	for _, a := range []string{"aws_ecs_service.agent", "aws_ecs_task_definition.agent"} {
		if moved[a] != a+"[0]" {
			t.Errorf("no moved block from %s to %s[0]: existing fixed-mode stacks would replace it", a, a)
		}
	}
	if m.variables["scaling"] == nil || m.variables["scaling"].def == nil || m.variables["scaling"].def.AsString() != "fixed" {
		t.Errorf("scaling must default to fixed")
	}
}

func TestAgentContainerNonRootMode(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	c := m.plan(t, baseVars(map[string]any{"agent_container_user": "non-root"}))
	for _, d := range containers(t, c) {
		checkAgentProcess(t, "fixed/"+d.Name, "non-root", d)
	}
	c = m.plan(t, scalerVars(map[string]any{"agent_container_user": "non-root"}))
	for _, td := range c.instances(t, "aws_ecs_task_definition.profile") {
		for _, d := range decodeContainers(t, td.str("family"), td.attrs["container_definitions"]) {
			checkAgentProcess(t, td.str("family")+"/"+d.Name, "non-root", d)
		}
	}
	// The settings are literal in one locals block, for readers and for tests
	// that run the image with them.
	modes, ok := m.locals["agent_process_modes"]
	if !ok {
		t.Fatal("local.agent_process_modes is missing")
	}
	if len(modes.Variables()) != 0 {
		t.Errorf("local.agent_process_modes must be literal (no references)")
	}
}

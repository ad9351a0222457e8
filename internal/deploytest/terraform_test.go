package deploytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

func terraformDir(t *testing.T) string { return filepath.Join(repoRoot(t), "terraform") }

// requiredVars are the variables a user must set; baseVars sets them.
var requiredVars = []string{"azp_url", "log_retention_days", "region", "subnet_ids", "vpc_id"}

func baseVars(extra map[string]any) map[string]any {
	v := map[string]any{
		"region":             "eu-west-1",
		"azp_url":            "https://dev.azure.com/acme",
		"vpc_id":             "vpc-0123456789abcdef0",
		"subnet_ids":         []string{"subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"},
		"log_retention_days": 30,
	}
	for k, x := range extra {
		v[k] = x
	}
	return v
}

var storageModes = []string{"ephemeral", "bind", "ebs", "efs"}

func TestTerraformFormatted(t *testing.T) {
	dir := terraformDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	more, _ := filepath.Glob(filepath.Join(dir, "*.tfvars*"))
	files = append(files, more...)
	if len(files) < 10 {
		t.Fatalf("expected the split module (versions, variables, outputs, ecr, ecs, iam, storage, network, logs, secret), found %d files", len(files))
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted: run `terraform fmt terraform`", f)
		}
	}
	// The Go check above mirrors `terraform fmt`; run the real one where it exists.
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Log("terraform not installed: formatting checked with hclwrite only")
		return
	}
	out, err := exec.Command(tf, "fmt", "-check", "-recursive", dir).CombinedOutput()
	if err != nil {
		t.Errorf("terraform fmt -check: %v\n%s", err, out)
	}
}

func TestTerraformFilesSplitByConcern(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	want := map[string][]string{
		"ecr.tf":     {"aws_ecr_repository.agent", "aws_ecr_lifecycle_policy.agent"},
		"ecs.tf":     {"aws_ecs_cluster.this", "aws_ecs_task_definition.agent", "aws_ecs_service.agent"},
		"iam.tf":     {"aws_iam_role.execution", "aws_iam_role.task", "aws_iam_role.infrastructure", "aws_iam_role.scaler", "aws_iam_role_policy.scaler", "data.aws_iam_policy_document.scaler"},
		"storage.tf": {"aws_efs_file_system.this", "aws_efs_access_point.this", "aws_efs_mount_target.this", "aws_efs_file_system_policy.this"},
		"network.tf": {"aws_security_group.task"},
		"logs.tf":    {"aws_cloudwatch_log_group.agent"},
		"secret.tf":  {"aws_secretsmanager_secret.azp"},
		"scaler.tf":  {"aws_ecs_task_definition.profile", "aws_ecs_task_definition.scaler", "aws_ecs_service.scaler"},
		"monitoring.tf": {"aws_cloudwatch_dashboard.agents", "aws_cloudwatch_metric_alarm.oldest_pending", "aws_cloudwatch_metric_alarm.failed_launches",
			"aws_cloudwatch_metric_alarm.agents_pruned", "aws_cloudwatch_metric_alarm.deregistration_failed"},
	}
	for file, addrs := range want {
		for _, a := range addrs {
			b, ok := m.blocks[a]
			if !ok {
				t.Errorf("%s is missing", a)
				continue
			}
			if b.file != file {
				t.Errorf("%s is in %s, want %s", a, b.file, file)
			}
		}
	}
	for _, f := range []string{"versions.tf", "variables.tf", "outputs.tf"} {
		if _, ok := m.files[f]; !ok {
			t.Errorf("terraform/%s is missing", f)
		}
	}
	for name, v := range m.variables {
		if m.files["variables.tf"] == nil || !strings.Contains(string(m.files["variables.tf"].Bytes), `variable "`+name+`"`) {
			t.Errorf("variable %s is not in variables.tf", name)
		}
		_ = v
	}
	for _, f := range []string{"README.md", "terraform.tfvars.example"} {
		if _, err := os.Stat(filepath.Join(terraformDir(t), f)); err != nil {
			t.Errorf("terraform/%s: %v", f, err)
		}
	}
}

func TestTerraformVariables(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	var required []string
	for name, v := range m.variables {
		if v.def == nil {
			required = append(required, name)
		}
	}
	slices.Sort(required)
	if !equalStrings(required, requiredVars) {
		t.Errorf("required variables = %v, want %v (log retention must be a deliberate choice)", required, requiredVars)
	}

	for _, mode := range storageModes {
		if _, err := m.tryPlan(t, baseVars(map[string]any{"storage_mode": mode})); err != nil {
			t.Errorf("storage_mode=%s refused: %v", mode, err)
		}
	}
	bad := []struct {
		name string
		set  map[string]any
	}{
		{"unknown storage mode", map[string]any{"storage_mode": "nfs"}},
		{"stop timeout above the Fargate maximum", map[string]any{"stop_timeout": 121}},
		{"stop timeout too short to deregister", map[string]any{"stop_timeout": 5}},
		{"unknown CPU architecture", map[string]any{"cpu_architecture": "ARM"}},
		{"ephemeral storage below 21 GiB", map[string]any{"ephemeral_storage_gib": 20}},
		{"log retention not offered by CloudWatch", map[string]any{"log_retention_days": 10}},
		{"token in extra_environment", map[string]any{"extra_environment": map[string]string{"AZP_TOKEN": "x"}}},
		{"stop timeout overridden in extra_environment", map[string]any{"extra_environment": map[string]string{"AZP_STOP_TIMEOUT": "30s"}}},
		{"no capacity provider weight", map[string]any{"fargate_weight": 0, "fargate_spot_weight": 0}},
		{"malformed digest", map[string]any{"image_digest": "latest"}},
		{"no subnet", map[string]any{"subnet_ids": []string{}}},
		{"zero agents per task", map[string]any{"agents_per_task": 0}},
	}
	for _, tc := range bad {
		_, err := m.tryPlan(t, baseVars(tc.set))
		var ee *evalErr
		if !errors.As(err, &ee) {
			t.Errorf("%s: accepted, want a validation error", tc.name)
		}
	}
	tok := m.variables["azp_token"]
	if tok == nil || !tok.ephemeral || !tok.sensitive {
		t.Errorf("variable azp_token must exist and be ephemeral and sensitive so the token never enters state")
	}
}

func TestTerraformTfvarsExample(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	path := filepath.Join(terraformDir(t), "terraform.tfvars.example")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, "terraform.tfvars.example", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", path, diags.Error())
	}
	set := map[string]any{}
	for name, a := range f.Body.(*hclsyntax.Body).Attributes {
		if _, ok := m.variables[name]; !ok {
			t.Errorf("%s sets undeclared variable %s", path, name)
			continue
		}
		if name == "azp_token" {
			t.Errorf("%s must not show a token: put it into the secret out of band", path)
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("%s: %s: %s", path, name, diags.Error())
		}
		var goVal any
		j, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(j, &goVal); err != nil {
			t.Fatal(err)
		}
		set[name] = jsonToGo(goVal)
	}
	for _, r := range requiredVars {
		if _, ok := set[r]; !ok {
			t.Errorf("%s does not set the required variable %s", path, r)
		}
	}
	if _, err := m.tryPlan(t, set); err != nil {
		t.Errorf("%s does not pass the variable validations: %v", path, err)
	}
}

// jsonToGo turns decoded JSON into the Go shapes goToCty accepts.
func jsonToGo(v any) any {
	switch x := v.(type) {
	case []any:
		s := make([]string, 0, len(x))
		for _, e := range x {
			s = append(s, fmt.Sprint(e))
		}
		return s
	case map[string]any:
		m := map[string]string{}
		for k, e := range x {
			m[k] = fmt.Sprint(e)
		}
		return m
	default:
		return v
	}
}

// ecsContainerKeys are the ContainerDefinition fields this module may use, spelt as
// the ECS API spells them (a miscased key is silently ignored by ECS).
var ecsContainerKeys = []string{
	"name", "image", "essential", "user", "environment", "stopTimeout", "healthCheck",
	"linuxParameters", "readonlyRootFilesystem", "mountPoints", "volumesFrom",
	"logConfiguration", "cpu", "memory", "memoryReservation", "ulimits", "dockerLabels",
	"startTimeout", "dependsOn", "secrets", "workingDirectory", "command", "entryPoint",
}

// rootCapabilities is decision 1: the entrypoint starts as root with exactly
// these, prepares the agent's files and drops the listener to AZP_RUN_AS.
var rootCapabilities = []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID"}

// checkAgentProcess asserts the user, capabilities and AZP_RUN_AS of an agent
// container in the given agent_container_user mode.
func checkAgentProcess(t *testing.T, where, mode string, d containerDef) {
	t.Helper()
	lp := d.LinuxParameters
	if lp == nil || lp.Capabilities == nil || !equalStrings(lp.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("%s: capabilities must drop ALL", where)
		return
	}
	add := slices.Sorted(slices.Values(lp.Capabilities.Add))
	env := d.env()
	switch mode {
	case "root":
		if d.User != "0" {
			t.Errorf("%s: user %q, want \"0\" (root by default, decision 1)", where, d.User)
		}
		if !slices.Equal(add, rootCapabilities) {
			t.Errorf("%s: capabilities add %v, want exactly %v", where, add, rootCapabilities)
		}
		if env["AZP_RUN_AS"] != "agent" {
			t.Errorf("%s: AZP_RUN_AS=%q, want agent (the listener and jobs never run as root)", where, env["AZP_RUN_AS"])
		}
	case "non-root":
		if d.User != "1000:1000" {
			t.Errorf("%s: user %q, want 1000:1000 in non-root mode", where, d.User)
		}
		if len(add) != 0 {
			t.Errorf("%s: non-root mode adds no capability, got %v", where, add)
		}
		if _, ok := env["AZP_RUN_AS"]; ok {
			t.Errorf("%s: AZP_RUN_AS set in non-root mode (nothing to drop to)", where)
		}
	}
}

type containerDef struct {
	Name        string `json:"name"`
	Image       string `json:"image"`
	Essential   *bool  `json:"essential"`
	User        string `json:"user"`
	Environment []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"environment"`
	StopTimeout *int `json:"stopTimeout"`
	HealthCheck *struct {
		Command     []string `json:"command"`
		Interval    int      `json:"interval"`
		Timeout     int      `json:"timeout"`
		Retries     int      `json:"retries"`
		StartPeriod int      `json:"startPeriod"`
	} `json:"healthCheck"`
	LinuxParameters *struct {
		InitProcessEnabled *bool `json:"initProcessEnabled"`
		Capabilities       *struct {
			Add  []string `json:"add"`
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"linuxParameters"`
	ReadonlyRootFilesystem *bool `json:"readonlyRootFilesystem"`
	MountPoints            []struct {
		SourceVolume  string `json:"sourceVolume"`
		ContainerPath string `json:"containerPath"`
		ReadOnly      bool   `json:"readOnly"`
	} `json:"mountPoints"`
	LogConfiguration *struct {
		LogDriver string            `json:"logDriver"`
		Options   map[string]string `json:"options"`
	} `json:"logConfiguration"`
	Secrets []any `json:"secrets"`
}

func (c containerDef) env() map[string]string {
	out := map[string]string{}
	for _, e := range c.Environment {
		out[e.Name] = e.Value
	}
	return out
}

// containers decodes the task definition's container_definitions exactly as ECS
// receives them.
func containers(t *testing.T, c *tfConfig) []containerDef {
	t.Helper()
	td := c.only(t, "aws_ecs_task_definition.agent")
	v := td.attrs["container_definitions"]
	if !v.IsKnown() || v.Type() != cty.String {
		t.Fatalf("container_definitions is not a known JSON string")
	}
	raw := []byte(v.AsString())
	var generic []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatalf("container_definitions: %v", err)
	}
	for _, g := range generic {
		for k := range g {
			if !slices.Contains(ecsContainerKeys, k) {
				t.Errorf("container definition key %q is not an ECS ContainerDefinition field", k)
			}
		}
	}
	var defs []containerDef
	if err := json.Unmarshal(raw, &defs); err != nil {
		t.Fatalf("container_definitions: %v", err)
	}
	return defs
}

type storageCase struct {
	mode    string
	agents  int
	efsWork bool
}

func (s storageCase) vars() map[string]any {
	return baseVars(map[string]any{"storage_mode": s.mode, "agents_per_task": s.agents, "efs_work": s.efsWork})
}

func (s storageCase) String() string {
	return fmt.Sprintf("%s/agents=%d/efs_work=%v", s.mode, s.agents, s.efsWork)
}

var storageCases = []storageCase{
	{"ephemeral", 1, false}, {"ephemeral", 2, false},
	{"bind", 1, false}, {"bind", 3, false},
	{"ebs", 1, false}, {"ebs", 2, false},
	{"efs", 1, false}, {"efs", 2, false}, {"efs", 2, true},
}

func TestTaskDefinitionMatchesBinary(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	imageWork := dockerfileVolume(t) // the image declares the bind-mount path
	for _, sc := range storageCases {
		t.Run(sc.String(), func(t *testing.T) {
			c := m.plan(t, sc.vars())
			defs := containers(t, c)
			if len(defs) != sc.agents {
				t.Fatalf("%d containers, want agents_per_task=%d", len(defs), sc.agents)
			}
			names := map[string]bool{}
			for _, d := range defs {
				where := "container " + d.Name
				if names[d.Name] {
					t.Errorf("duplicate container name %s", d.Name)
				}
				names[d.Name] = true
				env := d.env()
				if len(env) != len(d.Environment) {
					t.Errorf("%s: an environment variable is set twice", where)
				}
				checkEnvironment(t, where, env)

				// Stop budget: ECS stopTimeout must equal AZP_STOP_TIMEOUT.
				if d.StopTimeout == nil {
					t.Fatalf("%s: no stopTimeout", where)
				}
				st, ok := env["AZP_STOP_TIMEOUT"]
				if !ok {
					t.Fatalf("%s: AZP_STOP_TIMEOUT not set", where)
				}
				if got := parseStopTimeout(t, where, st); got != time.Duration(*d.StopTimeout)*time.Second {
					t.Errorf("%s: AZP_STOP_TIMEOUT=%s but stopTimeout=%d", where, st, *d.StopTimeout)
				}
				if *d.StopTimeout != 120 {
					t.Errorf("%s: default stopTimeout = %d, want 120 (the Fargate Spot warning)", where, *d.StopTimeout)
				}

				if d.HealthCheck == nil || !equalStrings(d.HealthCheck.Command, healthCommand) {
					t.Errorf("%s: healthCheck.command must be %q", where, healthCommand)
				} else {
					hc := d.HealthCheck
					if hc.Interval < 5 || hc.Interval > 300 || hc.Timeout < 2 || hc.Timeout > 60 || hc.Retries < 1 || hc.Retries > 10 || hc.StartPeriod > 300 || hc.Timeout >= hc.Interval {
						t.Errorf("%s: health check timings out of the ECS ranges: %+v", where, *hc)
					}
				}
				if d.LinuxParameters == nil || d.LinuxParameters.InitProcessEnabled == nil || *d.LinuxParameters.InitProcessEnabled {
					t.Errorf("%s: linuxParameters.initProcessEnabled must be false (azp-entrypoint is PID 1)", where)
				}
				checkAgentProcess(t, where, "root", d)
				if d.Essential == nil || !*d.Essential {
					t.Errorf("%s: must be essential (a --once agent ends the task)", where)
				}
				if len(d.Secrets) != 0 {
					t.Errorf("%s: ECS `secrets` are resolved once at start; use AZP_SECRET_ID", where)
				}
				if got := env["AZP_SECRET_ID"]; got != mockRef("aws_secretsmanager_secret", "azp", "arn") {
					t.Errorf("%s: AZP_SECRET_ID = %q, want the secret's ARN", where, got)
				}
				if env["AZP_URL"] != "https://dev.azure.com/acme" {
					t.Errorf("%s: AZP_URL = %q, want var.azp_url", where, env["AZP_URL"])
				}
				if d.Image != mockRef("aws_ecr_repository", "agent", "repository_url")+":latest" {
					t.Errorf("%s: image = %q, want the module's repository", where, d.Image)
				}
				lc := d.LogConfiguration
				if lc == nil || lc.LogDriver != "awslogs" || lc.Options["awslogs-group"] != mockRef("aws_cloudwatch_log_group", "agent", "name") ||
					lc.Options["awslogs-stream-prefix"] == "" || lc.Options["awslogs-region"] != "eu-west-1" {
					t.Errorf("%s: logs must go to the module's log group with a stream prefix: %+v", where, lc)
				}
				checkStorage(t, sc, d, env, imageWork)
			}
			checkVolumes(t, sc, c, defs)
		})
	}
}

// checkStorage asserts what each storage mode puts into one container.
func checkStorage(t *testing.T, sc storageCase, d containerDef, env map[string]string, imageWork string) {
	t.Helper()
	where := "container " + d.Name
	mounts := map[string]string{}
	for _, mp := range d.MountPoints {
		if mp.ReadOnly {
			t.Errorf("%s: mount %s is read-only", where, mp.ContainerPath)
		}
		mounts[mp.SourceVolume] = mp.ContainerPath
	}
	shared, hasShared := env["AZP_WORK_SHARED"]
	switch sc.mode {
	case "ephemeral":
		if len(mounts) != 0 || env["AZP_WORK"] != "" || hasShared {
			t.Errorf("%s: ephemeral mode mounts nothing and keeps the default work dir, got mounts %v env AZP_WORK=%q", where, mounts, env["AZP_WORK"])
		}
	case "bind", "ebs":
		p, ok := mounts["work"]
		if !ok || len(mounts) != 1 {
			t.Fatalf("%s: %s mode mounts exactly the volume \"work\", got %v", where, sc.mode, mounts)
		}
		if env["AZP_WORK"] != p {
			t.Errorf("%s: AZP_WORK=%q, want the mount path %q", where, env["AZP_WORK"], p)
		}
		if sc.mode == "bind" && p != imageWork {
			t.Errorf("%s: bind mount at %s but the image's VOLUME (which gives it the agent's ownership) is %s", where, p, imageWork)
		}
		wantShared := sc.mode == "bind" || sc.agents > 1
		if wantShared != (shared == "true") {
			t.Errorf("%s: AZP_WORK_SHARED=%q with %d agents on one %s volume", where, shared, sc.agents, sc.mode)
		}
	case "efs":
		p, ok := mounts["efs"]
		if !ok || len(mounts) != 1 {
			t.Fatalf("%s: efs mode mounts exactly the volume \"efs\", got %v", where, mounts)
		}
		for _, k := range []string{"AZP_AGENT_CACHE", "AZP_TOOLS_DIR"} {
			if !strings.HasPrefix(env[k], p+"/") {
				t.Errorf("%s: %s=%q, want a directory on EFS (%s)", where, k, env[k], p)
			}
		}
		if sc.efsWork {
			if !strings.HasPrefix(env["AZP_WORK"], p+"/") || shared != "true" {
				t.Errorf("%s: efs_work puts AZP_WORK on EFS and shares it, got AZP_WORK=%q AZP_WORK_SHARED=%q", where, env["AZP_WORK"], shared)
			}
		} else if env["AZP_WORK"] != "" || hasShared {
			t.Errorf("%s: without efs_work the work dir stays local, got AZP_WORK=%q", where, env["AZP_WORK"])
		}
	}
}

// checkVolumes asserts the task definition's volumes, the service's volume
// configuration and the resources each storage mode creates.
func checkVolumes(t *testing.T, sc storageCase, c *tfConfig, defs []containerDef) {
	t.Helper()
	td := c.only(t, "aws_ecs_task_definition.agent")
	vols := td.all("volume")
	used := map[string]bool{}
	for _, d := range defs {
		for _, mp := range d.MountPoints {
			used[mp.SourceVolume] = true
		}
	}
	var volNames []string
	for _, v := range vols {
		volNames = append(volNames, v.str("name"))
		if !used[v.str("name")] {
			t.Errorf("volume %s is mounted by no container", v.str("name"))
		}
	}
	for u := range used {
		if !slices.Contains(volNames, u) {
			t.Errorf("mount point refers to undefined volume %s", u)
		}
	}
	svc := c.only(t, "aws_ecs_service.agent")
	vcs := svc.all("volume_configuration")
	count := func(addr string) int { return len(c.instances(t, addr)) }

	wantEFS := 0
	if sc.mode == "efs" {
		wantEFS = 1
	}
	for _, a := range []string{"aws_efs_file_system.this", "aws_efs_access_point.this", "aws_efs_file_system_policy.this", "aws_security_group.efs", "aws_vpc_security_group_ingress_rule.efs_from_task", "aws_vpc_security_group_egress_rule.task_nfs"} {
		if got := count(a); got != wantEFS {
			t.Errorf("%s: %d instances in %s mode, want %d", a, got, sc.mode, wantEFS)
		}
	}
	wantEBS := 0
	if sc.mode == "ebs" {
		wantEBS = 1
	}
	if got := count("aws_iam_role.infrastructure"); got != wantEBS {
		t.Errorf("infrastructure role: %d instances in %s mode, want %d", got, sc.mode, wantEBS)
	}

	switch sc.mode {
	case "ephemeral":
		if len(vols) != 0 || len(vcs) != 0 {
			t.Errorf("ephemeral: want no volumes, got %d and %d volume configurations", len(vols), len(vcs))
		}
	case "bind":
		if len(vols) != 1 || len(vols[0].blocks) != 0 || !vols[0].attrs["configure_at_launch"].IsNull() && vols[0].attrs["configure_at_launch"].True() {
			t.Errorf("bind: want one plain (name-only) volume")
		}
		if len(vcs) != 0 {
			t.Errorf("bind: no service volume configuration expected")
		}
	case "ebs":
		if len(vols) != 1 {
			t.Fatalf("ebs: want one volume, got %d", len(vols))
		}
		cal := vols[0].attrs["configure_at_launch"]
		if cal.IsNull() || !cal.True() {
			t.Errorf("ebs: the volume must be configure_at_launch")
		}
		if len(vcs) != 1 || vcs[0].str("name") != vols[0].str("name") {
			t.Fatalf("ebs: the service must configure the volume %q at launch", vols[0].str("name"))
		}
		ebs := vcs[0].one(t, "managed_ebs_volume")
		if ebs.str("role_arn") != mockRef("aws_iam_role", "infrastructure", "arn") {
			t.Errorf("ebs: role_arn = %q, want the infrastructure role", ebs.str("role_arn"))
		}
		if enc := ebs.attrs["encrypted"]; enc.IsNull() || !enc.True() {
			t.Errorf("ebs: volumes must be encrypted")
		}
		att := c.only(t, "aws_iam_role_policy_attachment.infrastructure_volumes")
		if !strings.HasSuffix(att.str("policy_arn"), ":iam::aws:policy/service-role/AmazonECSInfrastructureRolePolicyForVolumes") {
			t.Errorf("ebs: infrastructure role needs AmazonECSInfrastructureRolePolicyForVolumes, got %s", att.str("policy_arn"))
		}
	case "efs":
		if len(vols) != 1 || len(vcs) != 0 {
			t.Fatalf("efs: want one volume and no service volume configuration")
		}
		ev := vols[0].one(t, "efs_volume_configuration")
		if ev.str("file_system_id") != mockRef("aws_efs_file_system", "this", "id") {
			t.Errorf("efs: file_system_id = %q", ev.str("file_system_id"))
		}
		if ev.str("transit_encryption") != "ENABLED" {
			t.Errorf("efs: transit_encryption must be ENABLED")
		}
		if rd := ev.str("root_directory"); rd != "" && rd != "/" {
			t.Errorf("efs: root_directory must be unset or / with an access point, got %q", rd)
		}
		ac := ev.one(t, "authorization_config")
		if ac.str("iam") != "ENABLED" || ac.str("access_point_id") != mockRef("aws_efs_access_point", "this", "id") {
			t.Errorf("efs: authorization_config must use the access point with IAM")
		}
		fs := c.only(t, "aws_efs_file_system.this")
		if enc := fs.attrs["encrypted"]; enc.IsNull() || !enc.True() {
			t.Errorf("efs: the file system must be encrypted at rest")
		}
		ap := c.only(t, "aws_efs_access_point.this")
		pu := ap.one(t, "posix_user")
		if uid := pu.attrs["uid"]; uid.IsNull() || uid.Equals(cty.NumberIntVal(0)).True() {
			t.Errorf("efs: the access point's posix_user must not be root")
		}
		ci := ap.one(t, "root_directory").one(t, "creation_info")
		if !ci.attrs["owner_uid"].Equals(pu.attrs["uid"]).True() || !ci.attrs["owner_gid"].Equals(pu.attrs["gid"]).True() || ci.str("permissions") == "" {
			t.Errorf("efs: creation_info must create the root owned by the posix user")
		}
		if got := count("aws_efs_mount_target.this"); got != 2 {
			t.Errorf("efs: want one mount target per task subnet (2), got %d", got)
		}
		for _, mt := range c.instances(t, "aws_efs_mount_target.this") {
			if !equalStrings(mt.strs("security_groups"), []string{mockRef("aws_security_group", "efs", "id")}) {
				t.Errorf("efs: mount targets must use only the EFS security group")
			}
		}
		in := c.only(t, "aws_vpc_security_group_ingress_rule.efs_from_task")
		if in.str("referenced_security_group_id") != mockRef("aws_security_group", "task", "id") || in.str("cidr_ipv4") != "" ||
			!in.attrs["from_port"].Equals(cty.NumberIntVal(2049)).True() || !in.attrs["to_port"].Equals(cty.NumberIntVal(2049)).True() {
			t.Errorf("efs: NFS must be allowed from the task security group only, on 2049")
		}
	}
}

func TestTaskDefinitionPlatform(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	c := m.plan(t, baseVars(map[string]any{"cpu_architecture": "ARM64", "ephemeral_storage_gib": 64, "stop_timeout": 90}))
	td := c.only(t, "aws_ecs_task_definition.agent")
	rp := td.one(t, "runtime_platform")
	if rp.str("cpu_architecture") != "ARM64" || rp.str("operating_system_family") != "LINUX" {
		t.Errorf("runtime_platform must follow var.cpu_architecture: %v", rp.attrs)
	}
	es := td.one(t, "ephemeral_storage")
	if !es.attrs["size_in_gib"].Equals(cty.NumberIntVal(64)).True() {
		t.Errorf("ephemeral_storage.size_in_gib must follow var.ephemeral_storage_gib")
	}
	if !slices.Equal(td.strs("requires_compatibilities"), []string{"FARGATE"}) || td.str("network_mode") != "awsvpc" {
		t.Errorf("the task definition must be FARGATE/awsvpc")
	}
	if td.str("execution_role_arn") != mockRef("aws_iam_role", "execution", "arn") || td.str("task_role_arn") != mockRef("aws_iam_role", "task", "arn") {
		t.Errorf("the task definition must use the module's execution and task roles")
	}
	for _, d := range containers(t, c) {
		if *d.StopTimeout != 90 || d.env()["AZP_STOP_TIMEOUT"] != "90s" {
			t.Errorf("stop_timeout=90 must set stopTimeout and AZP_STOP_TIMEOUT together: %d / %s", *d.StopTimeout, d.env()["AZP_STOP_TIMEOUT"])
		}
	}
	// The task definition's JSON must come from the local the tests decode.
	expr := m.blocks["aws_ecs_task_definition.agent"].body.Attributes["container_definitions"].Expr
	fc, ok := expr.(*hclsyntax.FunctionCallExpr)
	if !ok || fc.Name != "jsonencode" || len(fc.Args) != 1 || traversalString(fc.Args[0]) != "local.container_definitions" {
		t.Errorf("container_definitions must be jsonencode(local.container_definitions)")
	}
}

func TestImageByDigest(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	digest := "sha256:" + strings.Repeat("ab", 32)
	c := m.plan(t, baseVars(map[string]any{"image_digest": digest, "image_tag": "ignored"}))
	for _, d := range containers(t, c) {
		if want := mockRef("aws_ecr_repository", "agent", "repository_url") + "@" + digest; d.Image != want {
			t.Errorf("image = %q, want %q", d.Image, want)
		}
	}
	c = m.plan(t, baseVars(map[string]any{"agent_version": "4.261.0", "agent_name_prefix": ""}))
	env := containers(t, c)[0].env()
	if env["AZP_AGENT_VERSION"] != "4.261.0" {
		t.Errorf("agent_version must set AZP_AGENT_VERSION")
	}
	if _, ok := env["AZP_AGENT_NAME_PREFIX"]; ok {
		t.Errorf("an empty agent_name_prefix must not set AZP_AGENT_NAME_PREFIX")
	}
	c = m.plan(t, baseVars(map[string]any{"extra_environment": map[string]string{"AZP_IDLE_TIMEOUT": "30m", "AZP_NOT_A_SETTING": "x"}}))
	env = containers(t, c)[0].env()
	if env["AZP_IDLE_TIMEOUT"] != "30m" || env["AZP_NOT_A_SETTING"] != "x" {
		t.Errorf("extra_environment must reach the containers")
	}
}

func TestECR(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	for _, key := range []any{nil, "arn:aws:kms:eu-west-1:111122223333:key/ecr"} {
		c := m.plan(t, baseVars(map[string]any{"ecr_kms_key_arn": key}))
		repo := c.only(t, "aws_ecr_repository.agent")
		if repo.str("image_tag_mutability") != "IMMUTABLE" {
			t.Errorf("ECR tags must be IMMUTABLE")
		}
		scan := repo.one(t, "image_scanning_configuration").attrs["scan_on_push"]
		if scan.IsNull() || !scan.True() {
			t.Errorf("ECR must scan on push")
		}
		enc := repo.one(t, "encryption_configuration")
		if key == nil && enc.str("encryption_type") != "AES256" || key != nil && (enc.str("encryption_type") != "KMS" || enc.str("kms_key") != key) {
			t.Errorf("ECR encryption with key %v: %v", key, enc.attrs)
		}
		if _, ok := repo.attrs["force_delete"]; ok && repo.attrs["force_delete"].True() {
			t.Errorf("ECR force_delete would delete images with the stack")
		}
		lp := c.only(t, "aws_ecr_lifecycle_policy.agent")
		var pol struct {
			Rules []struct {
				RulePriority int `json:"rulePriority"`
				Selection    struct {
					TagStatus   string `json:"tagStatus"`
					CountType   string `json:"countType"`
					CountNumber int    `json:"countNumber"`
				} `json:"selection"`
				Action struct {
					Type string `json:"type"`
				} `json:"action"`
			} `json:"rules"`
		}
		if err := json.Unmarshal([]byte(lp.str("policy")), &pol); err != nil {
			t.Fatalf("lifecycle policy: %v", err)
		}
		if len(pol.Rules) < 2 {
			t.Fatalf("lifecycle policy must expire untagged images and keep a bounded number")
		}
		max := 0
		for i, r := range pol.Rules {
			if r.Action.Type != "expire" || r.Selection.CountNumber <= 0 {
				t.Errorf("rule %d: %+v", i, r)
			}
			if r.RulePriority > max {
				max = r.RulePriority
			}
		}
		for _, r := range pol.Rules {
			if r.Selection.TagStatus == "any" && r.RulePriority != max {
				t.Errorf("the tagStatus=any rule must have the highest priority")
			}
		}
	}
}

func TestServiceAndCluster(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	c := m.plan(t, baseVars(map[string]any{"desired_count": 5}))
	cl := c.only(t, "aws_ecs_cluster.this")
	ci := false
	for _, s := range cl.all("setting") {
		if s.str("name") == "containerInsights" && (s.str("value") == "enabled" || s.str("value") == "enhanced") {
			ci = true
		}
	}
	if !ci {
		t.Errorf("the cluster must enable Container Insights")
	}
	svc := c.only(t, "aws_ecs_service.agent")
	if !svc.attrs["desired_count"].Equals(cty.NumberIntVal(5)).True() {
		t.Errorf("desired_count must follow var.desired_count")
	}
	if lt := svc.str("launch_type"); lt != "" {
		t.Errorf("launch_type %q conflicts with the capacity provider strategy", lt)
	}
	if svc.str("platform_version") != "LATEST" {
		t.Errorf("platform_version should be LATEST (1.4.0: EFS, EBS, ephemeral storage)")
	}
	if ex := svc.attrs["enable_execute_command"]; !ex.IsNull() && ex.True() {
		t.Errorf("ECS Exec must be off by default")
	}
	strat := map[string]*evBody{}
	for _, s := range svc.all("capacity_provider_strategy") {
		strat[s.str("capacity_provider")] = s
	}
	fg, spot := strat["FARGATE"], strat["FARGATE_SPOT"]
	if fg == nil || spot == nil || len(strat) != 2 {
		t.Fatalf("the service needs a FARGATE base and FARGATE_SPOT, got %v", sortedKeys(strat))
	}
	if b := fg.attrs["base"]; b.IsNull() || b.LessThan(cty.NumberIntVal(1)).True() {
		t.Errorf("FARGATE must carry a base of at least 1 by default")
	}
	if w := spot.attrs["weight"]; w.IsNull() || !w.GreaterThan(cty.NumberIntVal(0)).True() {
		t.Errorf("FARGATE_SPOT must have a weight by default")
	}
	nc := svc.one(t, "network_configuration")
	if p := nc.attrs["assign_public_ip"]; p.IsNull() || p.True() {
		t.Errorf("no public IP by default")
	}
	if !slices.Equal(nc.strs("subnets"), []string{"subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"}) {
		t.Errorf("service subnets must be var.subnet_ids")
	}
	if sg := nc.strs("security_groups"); len(sg) == 0 || sg[0] != mockRef("aws_security_group", "task", "id") {
		t.Errorf("service must use the task security group, got %v", sg)
	}
}

func TestNetwork(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	for _, mode := range storageModes {
		for _, endpoints := range []bool{false, true} {
			c := m.plan(t, baseVars(map[string]any{"storage_mode": mode, "create_vpc_endpoints": endpoints, "vpc_endpoint_route_table_ids": []string{"rtb-1"}}))
			task := mockRef("aws_security_group", "task", "id")
			for addr, b := range m.blocks {
				if b.kind != "resource" {
					continue
				}
				switch b.typ {
				case "aws_security_group":
					for _, in := range c.instances(t, addr) {
						if len(in.all("ingress")) > 0 || len(in.all("egress")) > 0 {
							t.Errorf("%s: use separate rule resources, not inline rules", addr)
						}
					}
				case "aws_security_group_rule":
					t.Errorf("%s: use aws_vpc_security_group_*_rule", addr)
				case "aws_vpc_security_group_ingress_rule":
					for _, r := range c.instances(t, addr) {
						if r.str("security_group_id") == task {
							t.Errorf("%s: the task security group takes no ingress", addr)
						}
						if r.str("cidr_ipv4") != "" || r.str("cidr_ipv6") != "" || r.str("referenced_security_group_id") != task {
							t.Errorf("%s: ingress only from the task security group", addr)
						}
					}
				case "aws_vpc_security_group_egress_rule":
					for _, r := range c.instances(t, addr) {
						if r.str("security_group_id") != task {
							continue
						}
						port := r.attrs["from_port"]
						to := r.attrs["to_port"]
						if r.str("ip_protocol") != "tcp" || !port.Equals(to).True() {
							t.Errorf("%s: egress must be single TCP ports", addr)
							continue
						}
						switch {
						case port.Equals(cty.NumberIntVal(443)).True():
						case port.Equals(cty.NumberIntVal(2049)).True():
							if mode != "efs" || r.str("referenced_security_group_id") != mockRef("aws_security_group", "efs", "id") {
								t.Errorf("%s: NFS egress only to the EFS security group in efs mode", addr)
							}
						default:
							t.Errorf("%s: task egress only on 443 (and 2049 to EFS)", addr)
						}
					}
				}
			}
			eps := c.instances(t, "aws_vpc_endpoint.interface")
			if !endpoints && len(eps) != 0 || endpoints && len(eps) != 4 {
				t.Errorf("create_vpc_endpoints=%v: %d interface endpoints", endpoints, len(eps))
			}
			var services []string
			for _, ep := range eps {
				services = append(services, ep.str("service_name"))
				if p := ep.attrs["private_dns_enabled"]; p.IsNull() || !p.True() {
					t.Errorf("endpoint %s needs private DNS", ep.str("service_name"))
				}
			}
			slices.Sort(services)
			if endpoints && !slices.Equal(services, []string{"com.amazonaws.eu-west-1.ecr.api", "com.amazonaws.eu-west-1.ecr.dkr", "com.amazonaws.eu-west-1.logs", "com.amazonaws.eu-west-1.secretsmanager"}) {
				t.Errorf("interface endpoints = %v", services)
			}
			if got := len(c.instances(t, "aws_vpc_endpoint.s3")); endpoints && got != 1 || !endpoints && got != 0 {
				t.Errorf("S3 gateway endpoint: %d", got)
			}
		}
	}
}

// policyStatement is one evaluated statement of an aws_iam_policy_document.
type policyStatement struct {
	doc        string
	sid        string
	effect     string
	actions    []string
	resources  []string
	principals []string
	conditions map[string][]string // variable -> values
}

func policyDocs(t *testing.T, c *tfConfig) map[string][]policyStatement {
	t.Helper()
	out := map[string][]policyStatement{}
	for addr, b := range c.m.blocks {
		if b.kind != "data" || b.typ != "aws_iam_policy_document" {
			continue
		}
		for _, doc := range c.instances(t, addr) {
			for _, st := range doc.all("statement") {
				ps := policyStatement{doc: b.name, sid: st.str("sid"), effect: st.str("effect"), actions: st.strs("actions"), resources: st.strs("resources"), conditions: map[string][]string{}}
				if ps.effect == "" {
					ps.effect = "Allow"
				}
				for _, k := range []string{"not_actions", "not_resources", "not_principals"} {
					if v, ok := st.attrs[k]; ok && !v.IsNull() {
						t.Errorf("%s: %s %s is hard to reason about; list what is allowed", addr, ps.sid, k)
					}
				}
				for _, p := range st.all("principals") {
					ps.principals = append(ps.principals, p.strs("identifiers")...)
				}
				for _, cond := range st.all("condition") {
					ps.conditions[cond.str("variable")] = cond.strs("values")
				}
				out[b.name] = append(out[b.name], ps)
			}
		}
	}
	return out
}

func TestIAMLeastPrivilege(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	kms := "arn:aws:kms:eu-west-1:111122223333:key/k"
	for _, scaling := range []string{"fixed", "scaler"} {
		for _, mode := range storageModes {
			if scaling == "scaler" && mode == "ebs" {
				continue // refused: TestScalerModeRefusesWhatItCannotRun
			}
			for _, withKMS := range []bool{false, true} {
				set := map[string]any{"storage_mode": mode}
				if withKMS {
					for _, k := range []string{"secret_kms_key_arn", "ebs_kms_key_arn", "efs_kms_key_arn", "log_kms_key_arn", "ecr_kms_key_arn"} {
						set[k] = kms
					}
				}
				vars := baseVars(set)
				if scaling == "scaler" {
					vars = scalerVars(set)
				}
				c := m.plan(t, vars)
				docs := policyDocs(t, c)
				for _, sts := range docs {
					for _, s := range sts {
						where := fmt.Sprintf("%s/%s (%s, kms=%v)", s.doc, s.sid, mode, withKMS)
						if s.sid == "" {
							t.Errorf("%s: every statement needs a sid", where)
						}
						if slices.Contains(s.resources, "*") {
							for _, a := range s.actions {
								cond, ok := wildcardResourceActions[a]
								if s.effect != "Allow" || !ok || cond != "" && len(s.conditions[cond]) == 0 {
									t.Errorf("%s: resource \"*\" for %s; only for actions without resource-level permissions (%v), with their condition", where, a, sortedKeys(wildcardResourceActions))
								}
							}
						}
						if len(s.resources) == 0 && len(s.principals) == 0 {
							t.Errorf("%s: no resources", where)
						}
						if s.effect == "Allow" {
							for _, a := range s.actions {
								if strings.Contains(a, "*") {
									t.Errorf("%s: wildcard action %s in an Allow", where, a)
								}
							}
							if slices.Contains(s.principals, "*") {
								t.Errorf("%s: Allow to principal *", where)
							}
						}
					}
				}

				// Trust policies: the service principal only, with a source-account condition.
				for _, role := range []string{"aws_iam_role.execution", "aws_iam_role.task", "aws_iam_role.infrastructure", "aws_iam_role.scaler"} {
					for _, r := range c.instances(t, role) {
						ref := traversalString(r.exprs["assume_role_policy"])
						mm := policyDocRef.FindStringSubmatch(ref)
						if mm == nil {
							t.Fatalf("%s: assume_role_policy must be an aws_iam_policy_document, got %q", role, ref)
						}
						for _, s := range docs[mm[1]] {
							if !slices.Equal(s.actions, []string{"sts:AssumeRole"}) || len(s.principals) != 1 || !strings.HasSuffix(s.principals[0], ".amazonaws.com") {
								t.Errorf("%s trust %s: one AWS service may assume the role", role, s.sid)
							}
							if got := s.conditions["aws:SourceAccount"]; !slices.Equal(got, []string{mockRef("data", "aws_caller_identity", "current", "account_id")}) {
								t.Errorf("%s trust %s: needs aws:SourceAccount = this account, got %v", role, s.sid, got)
							}
							if len(s.conditions["aws:SourceArn"]) != 1 {
								t.Errorf("%s trust %s: needs an aws:SourceArn condition", role, s.sid)
							}
						}
					}
				}

				// Every policy comes from a policy document the checks above have seen.
				for addr, b := range m.blocks {
					if b.kind != "resource" {
						continue
					}
					switch b.typ {
					case "aws_iam_role_policy", "aws_efs_file_system_policy", "aws_secretsmanager_secret_policy", "aws_ecr_repository_policy", "aws_iam_policy":
						for _, r := range c.instances(t, addr) {
							if ref := traversalString(r.exprs["policy"]); !policyDocRef.MatchString(ref) {
								t.Errorf("%s: policy must reference an aws_iam_policy_document, got %q", addr, ref)
							}
						}
					case "aws_iam_role_policy_attachment":
						for _, r := range c.instances(t, addr) {
							if !strings.HasSuffix(r.str("policy_arn"), ":iam::aws:policy/service-role/AmazonECSInfrastructureRolePolicyForVolumes") {
								t.Errorf("%s: unexpected managed policy %s", addr, r.str("policy_arn"))
							}
						}
					case "aws_iam_user", "aws_iam_access_key", "aws_iam_user_policy", "aws_iam_role_policies_exclusive":
						t.Errorf("%s: no IAM users or keys", addr)
					}
				}

				checkExecutionRole(t, docs["execution"])
				checkTaskRole(t, mode, withKMS, kms, docs["task"])
				if mode == "efs" {
					checkEFSPolicy(t, docs["efs"])
				}
			}
		}
	}
}

func actionsOf(sts []policyStatement) map[string][]string {
	out := map[string][]string{}
	for _, s := range sts {
		if s.effect != "Allow" {
			continue
		}
		for _, a := range s.actions {
			out[a] = append(out[a], s.resources...)
		}
	}
	return out
}

func checkExecutionRole(t *testing.T, sts []policyStatement) {
	t.Helper()
	acts := actionsOf(sts)
	repo := mockRef("aws_ecr_repository", "agent", "arn")
	for _, a := range []string{"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"} {
		if !slices.Equal(acts[a], []string{repo}) {
			t.Errorf("execution role: %s must be on the one repository, got %v", a, acts[a])
		}
	}
	group := mockRef("aws_cloudwatch_log_group", "agent", "arn")
	for _, a := range []string{"logs:CreateLogStream", "logs:PutLogEvents"} {
		if len(acts[a]) != 1 || !strings.HasPrefix(acts[a][0], group+":") {
			t.Errorf("execution role: %s must be on the one log group, got %v", a, acts[a])
		}
	}
	for a := range acts {
		if strings.HasPrefix(a, "secretsmanager:") || strings.HasPrefix(a, "kms:") {
			t.Errorf("execution role: %s not needed (the agent reads its secret with the task role)", a)
		}
	}
}

func checkTaskRole(t *testing.T, mode string, withKMS bool, kms string, sts []policyStatement) {
	t.Helper()
	acts := actionsOf(sts)
	if !slices.Equal(acts["secretsmanager:GetSecretValue"], []string{mockRef("aws_secretsmanager_secret", "azp", "arn")}) {
		t.Errorf("task role: GetSecretValue on the one secret, got %v", acts["secretsmanager:GetSecretValue"])
	}
	for _, a := range []string{"ecs:UpdateTaskProtection", "ecs:GetTaskProtection"} {
		if len(acts[a]) != 1 || !strings.Contains(acts[a][0], ":task/") {
			t.Errorf("task role: %s on the cluster's tasks, got %v", a, acts[a])
		}
	}
	if withKMS {
		found := false
		for _, s := range sts {
			if slices.Equal(s.actions, []string{"kms:Decrypt"}) && slices.Equal(s.resources, []string{kms}) {
				found = true
				if v := s.conditions["kms:ViaService"]; !slices.Equal(v, []string{"secretsmanager.eu-west-1.amazonaws.com"}) {
					t.Errorf("task role: kms:Decrypt must be limited to Secrets Manager, got %v", v)
				}
			}
		}
		if !found {
			t.Errorf("task role: kms:Decrypt on the secret's key is missing")
		}
	} else if _, ok := acts["kms:Decrypt"]; ok {
		t.Errorf("task role: no kms:Decrypt without a customer key")
	}
	_, mount := acts["elasticfilesystem:ClientMount"]
	if mount != (mode == "efs") {
		t.Errorf("task role: EFS client rights in %s mode = %v", mode, mount)
	}
	allowed := []string{"secretsmanager:GetSecretValue", "kms:Decrypt", "ecs:UpdateTaskProtection", "ecs:GetTaskProtection", "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"}
	for a := range acts {
		if !slices.Contains(allowed, a) {
			t.Errorf("task role: %s is more than the agent needs (pipelines may inherit this role)", a)
		}
	}
}

func checkEFSPolicy(t *testing.T, sts []policyStatement) {
	t.Helper()
	tls := false
	for _, s := range sts {
		if s.effect == "Deny" && slices.Equal(s.conditions["aws:SecureTransport"], []string{"false"}) && slices.Contains(s.principals, "*") {
			tls = true
		}
		if s.effect == "Allow" {
			if !slices.Equal(s.principals, []string{mockRef("aws_iam_role", "task", "arn")}) {
				t.Errorf("efs policy %s: allow only the task role, got %v", s.sid, s.principals)
			}
			if !slices.Equal(s.conditions["elasticfilesystem:AccessPointArn"], []string{mockRef("aws_efs_access_point", "this", "arn")}) {
				t.Errorf("efs policy %s: allow only through the access point", s.sid)
			}
		}
	}
	if !tls {
		t.Errorf("efs policy: must deny access without TLS (aws:SecureTransport=false)")
	}
}

func TestSecretNeverInState(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	c := m.plan(t, baseVars(nil))
	sec := c.only(t, "aws_secretsmanager_secret.azp")
	for _, k := range []string{"secret_string", "secret_binary"} {
		if _, ok := sec.attrs[k]; ok {
			t.Errorf("the secret must be created without a value")
		}
	}
	if n := len(c.instances(t, "aws_secretsmanager_secret_version.azp")); n != 0 {
		t.Errorf("without azp_token_version Terraform must not write a secret value (%d versions)", n)
	}
	for addr, b := range m.blocks {
		if b.typ != "aws_secretsmanager_secret_version" {
			continue
		}
		for _, k := range []string{"secret_string", "secret_binary"} {
			if _, ok := b.body.Attributes[k]; ok {
				t.Errorf("%s uses %s, which is stored in state; use secret_string_wo", addr, k)
			}
		}
		if _, ok := b.body.Attributes["secret_string_wo"]; !ok {
			t.Errorf("%s must use the write-only secret_string_wo", addr)
		}
	}
	kms := "arn:aws:kms:eu-west-1:111122223333:key/s"
	c = m.plan(t, baseVars(map[string]any{"secret_kms_key_arn": kms, "azp_token_version": 1}))
	if c.only(t, "aws_secretsmanager_secret.azp").str("kms_key_id") != kms {
		t.Errorf("secret_kms_key_arn must encrypt the secret")
	}
	if n := len(c.instances(t, "aws_secretsmanager_secret_version.azp")); n != 1 {
		t.Errorf("azp_token_version set: want one write-only version, got %d", n)
	}
	// No variable other than the ephemeral token may look like a credential.
	for name, v := range m.variables {
		if regexp.MustCompile(`(?i)token|password|secret_string|pat$`).MatchString(name) && name != "azp_token_version" && !v.ephemeral {
			t.Errorf("variable %s looks like a credential but is not ephemeral", name)
		}
	}
	// Outputs never expose the variables.
	for name, o := range m.outputs {
		for _, tr := range o.Attributes["value"].Expr.Variables() {
			if tr.RootName() == "var" && len(tr) > 1 {
				if a, ok := tr[1].(hcl.TraverseAttr); ok && a.Name == "azp_token" {
					t.Errorf("output %s exposes azp_token", name)
				}
			}
		}
	}
}

func TestLogsAndOutputs(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	kms := "arn:aws:kms:eu-west-1:111122223333:key/l"
	c := m.plan(t, baseVars(map[string]any{"log_retention_days": 90, "log_kms_key_arn": kms}))
	lg := c.only(t, "aws_cloudwatch_log_group.agent")
	if !lg.attrs["retention_in_days"].Equals(cty.NumberIntVal(90)).True() || lg.str("kms_key_id") != kms {
		t.Errorf("log group must follow log_retention_days and log_kms_key_arn: %v", lg.attrs)
	}
	want := map[string]string{
		"repository_url": "aws_ecr_repository.agent.repository_url",
		"cluster_name":   "aws_ecs_cluster.this.name",
		"log_group_name": "aws_cloudwatch_log_group.agent.name",
		"secret_arn":     "aws_secretsmanager_secret.azp.arn",
		"region":         "var.region",
	}
	for name, ref := range want {
		o, ok := m.outputs[name]
		if !ok {
			t.Errorf("output %s is missing", name)
			continue
		}
		if got := traversalString(o.Attributes["value"].Expr); got != ref {
			t.Errorf("output %s = %s, want %s", name, got, ref)
		}
	}
	// Fixed-mode outputs: the resource when it exists, else null.
	for name, ref := range map[string]string{"service_name": "aws_ecs_service.agent[0].name", "task_definition_arn": "aws_ecs_task_definition.agent[0].arn"} {
		o, ok := m.outputs[name]
		if !ok {
			t.Errorf("output %s is missing", name)
			continue
		}
		cond, ok := o.Attributes["value"].Expr.(*hclsyntax.ConditionalExpr)
		if !ok || traversalString(cond.Condition) != "local.fixed" || traversalString(cond.TrueResult) != ref {
			t.Errorf("output %s must be local.fixed ? %s : null", name, ref)
		}
	}
	for name, o := range m.outputs {
		if _, ok := o.Attributes["description"]; !ok {
			t.Errorf("output %s has no description", name)
		}
	}
}

func TestVersionsPinned(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	if len(m.terraform) != 1 {
		t.Fatalf("want one terraform block, got %d", len(m.terraform))
	}
	tb := m.terraform[0]
	rv, ok := tb.Attributes["required_version"]
	if !ok {
		t.Fatalf("terraform.required_version is missing")
	}
	v, _ := rv.Expr.Value(nil)
	if !strings.Contains(v.AsString(), "1.11") {
		t.Errorf("required_version %q must demand 1.11+ (write-only secret_string_wo)", v.AsString())
	}
	found := false
	for _, b := range tb.Blocks {
		if b.Type != "required_providers" {
			continue
		}
		aws, ok := b.Body.Attributes["aws"]
		if !ok {
			continue
		}
		val, diags := aws.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		src := val.GetAttr("source").AsString()
		ver := val.GetAttr("version").AsString()
		if src != "hashicorp/aws" || !strings.Contains(ver, "<") {
			t.Errorf("aws provider must be hashicorp/aws with an upper bound, got %s %s", src, ver)
		}
		found = true
	}
	if !found {
		t.Errorf("required_providers.aws is missing")
	}
}

// TestTfsecIgnoresHaveReasons keeps every suppressed finding explained in place.
func TestTfsecIgnoresHaveReasons(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(terraformDir(t), "*.tf"))
	re := regexp.MustCompile(`(?:#|//)\s*tfsec:ignore:([a-z0-9-]+)(.*)`)
	for _, f := range files {
		src, _ := os.ReadFile(f)
		for i, line := range strings.Split(string(src), "\n") {
			for _, mm := range re.FindAllStringSubmatch(line, -1) {
				if len(strings.Fields(mm[2])) < 3 {
					t.Errorf("%s:%d: tfsec:ignore:%s needs a reason after the rule", filepath.Base(f), i+1, mm[1])
				}
			}
		}
	}
}

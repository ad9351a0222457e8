package deploytest

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// The provider-dependent half of `terraform validate`, offline: every .tf file of
// terraform/ (root and any module below it) is held against the schema of the
// hashicorp/aws provider 6.47.0 (`terraform providers schema -json`, kept in
// /work/shared/reference/terraform and copied under testdata when present). A
// resource or data type must exist; every argument must be one the type has,
// not computed-only and not deprecated; every nested block (dynamic ones too)
// must be one the type has, within its min/max items; required arguments and
// blocks must be present; and the values the module evaluates to (see
// tfmodule_test.go) must convert to the declared attribute types.

// providerSchemaVersion is the provider release the schema file describes;
// versions.tf's constraint must admit it.
const providerSchemaVersion = "6.47.0"

type schemaAttr struct {
	Type       json.RawMessage `json:"type"`
	NestedType *struct {
		Attributes  map[string]*schemaAttr `json:"attributes"`
		NestingMode string                 `json:"nesting_mode"`
	} `json:"nested_type"`
	Required   bool `json:"required"`
	Optional   bool `json:"optional"`
	Computed   bool `json:"computed"`
	Deprecated bool `json:"deprecated"`
}

type schemaBlockType struct {
	NestingMode string       `json:"nesting_mode"`
	MinItems    int          `json:"min_items"`
	MaxItems    int          `json:"max_items"`
	Block       *schemaBlock `json:"block"`
}

type schemaBlock struct {
	Attributes map[string]*schemaAttr      `json:"attributes"`
	BlockTypes map[string]*schemaBlockType `json:"block_types"`
	Deprecated bool                        `json:"deprecated"`
}

type providerSchema struct {
	Resources   map[string]struct{ Block *schemaBlock } `json:"resource_schemas"`
	DataSources map[string]struct{ Block *schemaBlock } `json:"data_source_schemas"`
}

var (
	awsSchemaOnce sync.Once
	awsSchemaVal  *providerSchema
	awsSchemaErr  error
)

// schemaFile finds the provider schema: the shared reference copy, or one
// checked in under testdata.
func schemaFile(t *testing.T) string {
	t.Helper()
	name := "aws-provider-" + providerSchemaVersion + "-schema.json.gz"
	for _, p := range []string{
		filepath.Join(repoRoot(t), "internal", "deploytest", "testdata", name),
		filepath.Join("/work/shared/reference/terraform", name),
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("provider schema %s not found (internal/deploytest/testdata or /work/shared/reference/terraform)", name)
	return ""
}

func awsSchema(t *testing.T) *providerSchema {
	t.Helper()
	path := schemaFile(t)
	awsSchemaOnce.Do(func() {
		f, err := os.Open(path)
		if err != nil {
			awsSchemaErr = err
			return
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			awsSchemaErr = err
			return
		}
		var doc struct {
			ProviderSchemas map[string]*providerSchema `json:"provider_schemas"`
		}
		if err := json.NewDecoder(zr).Decode(&doc); err != nil {
			awsSchemaErr = err
			return
		}
		awsSchemaVal = doc.ProviderSchemas["registry.terraform.io/hashicorp/aws"]
		if awsSchemaVal == nil {
			awsSchemaErr = fmt.Errorf("%s holds no registry.terraform.io/hashicorp/aws schema", path)
		}
	})
	if awsSchemaErr != nil {
		t.Fatalf("provider schema: %v", awsSchemaErr)
	}
	return awsSchemaVal
}

func (p *providerSchema) lookup(kind, typ string) *schemaBlock {
	if kind == "data" {
		if s, ok := p.DataSources[typ]; ok {
			return s.Block
		}
		return nil
	}
	if s, ok := p.Resources[typ]; ok {
		return s.Block
	}
	return nil
}

// attrType is the cty type of a schema attribute (nested_type included).
func (a *schemaAttr) attrType() (cty.Type, error) {
	if a.NestedType != nil {
		attrs := map[string]cty.Type{}
		var optional []string
		for name, na := range a.NestedType.Attributes {
			ty, err := na.attrType()
			if err != nil {
				return cty.NilType, err
			}
			attrs[name] = ty
			if !na.Required {
				optional = append(optional, name)
			}
		}
		obj := cty.ObjectWithOptionalAttrs(attrs, optional)
		switch a.NestedType.NestingMode {
		case "single", "group":
			return obj, nil
		case "list":
			return cty.List(obj), nil
		case "set":
			return cty.Set(obj), nil
		case "map":
			return cty.Map(obj), nil
		}
		return cty.NilType, fmt.Errorf("nesting mode %q", a.NestedType.NestingMode)
	}
	return ctyjson.UnmarshalType(a.Type)
}

// resourceMeta are the meta-arguments Terraform itself takes in a resource or
// data block; they are not part of the provider's schema.
var (
	resourceMetaAttrs  = []string{"count", "for_each", "depends_on", "provider"}
	resourceMetaBlocks = []string{"lifecycle", "provisioner", "connection"}
)

// checkBodySchema walks one block body (as written: dynamic blocks are checked
// through their content) against its schema and returns every problem.
func checkBodySchema(where string, body *hclsyntax.Body, sch *schemaBlock, topLevel bool) []string {
	var probs []string
	if sch.Deprecated {
		probs = append(probs, where+": deprecated")
	}
	for _, name := range sortedKeys(body.Attributes) {
		a := body.Attributes[name]
		at := fmt.Sprintf("%s.%s (%s)", where, name, a.SrcRange)
		if topLevel && slices.Contains(resourceMetaAttrs, name) {
			continue
		}
		sa, ok := sch.Attributes[name]
		if !ok {
			if _, isBlock := sch.BlockTypes[name]; isBlock {
				probs = append(probs, at+": is a block, not an argument: write `"+name+" { ... }`")
			} else {
				probs = append(probs, at+": unsupported argument")
			}
			continue
		}
		if sa.Computed && !sa.Optional && !sa.Required {
			probs = append(probs, at+": computed-only attribute, cannot be set")
		}
		if sa.Deprecated {
			probs = append(probs, at+": deprecated attribute")
		}
		// Literal values are checked here; evaluated ones in checkValuesSchema.
		if len(a.Expr.Variables()) == 0 {
			if v, diags := a.Expr.Value(nil); !diags.HasErrors() {
				if p := typeProblem(sa, v); p != "" {
					probs = append(probs, at+": "+p)
				}
			}
		}
	}
	for _, name := range sortedKeys(sch.Attributes) {
		if sch.Attributes[name].Required {
			if _, ok := body.Attributes[name]; !ok {
				probs = append(probs, fmt.Sprintf("%s: required argument %q is missing", where, name))
			}
		}
	}
	count := map[string]int{}
	hasDynamic := map[string]bool{}
	for _, b := range body.Blocks {
		at := fmt.Sprintf("%s.%s (%s)", where, b.Type, b.DefRange())
		if topLevel && slices.Contains(resourceMetaBlocks, b.Type) {
			continue
		}
		typ, content := b.Type, b.Body
		if b.Type == "dynamic" {
			if len(b.Labels) != 1 {
				probs = append(probs, at+": dynamic needs one label")
				continue
			}
			typ = b.Labels[0]
			at = fmt.Sprintf("%s.dynamic %q (%s)", where, typ, b.DefRange())
			if _, ok := b.Body.Attributes["for_each"]; !ok {
				probs = append(probs, at+": no for_each")
			}
			content = nil
			for _, cb := range b.Body.Blocks {
				if cb.Type == "content" {
					content = cb.Body
				}
			}
			if content == nil {
				probs = append(probs, at+": no content block")
				continue
			}
			for name := range b.Body.Attributes {
				if name != "for_each" && name != "iterator" && name != "labels" {
					probs = append(probs, at+": unsupported argument "+name+" in dynamic")
				}
			}
			hasDynamic[typ] = true
		} else {
			count[typ]++
		}
		bt, ok := sch.BlockTypes[typ]
		if !ok {
			if _, isAttr := sch.Attributes[typ]; isAttr {
				probs = append(probs, at+": is an argument, not a block: write `"+typ+" = ...`")
			} else {
				probs = append(probs, at+": unsupported block type")
			}
			continue
		}
		probs = append(probs, checkBodySchema(where+"."+typ, content, bt.Block, false)...)
	}
	for _, name := range sortedKeys(sch.BlockTypes) {
		bt := sch.BlockTypes[name]
		if bt.MinItems > 0 && count[name] == 0 && !hasDynamic[name] {
			probs = append(probs, fmt.Sprintf("%s: required block %q is missing", where, name))
		}
		if bt.MaxItems > 0 && count[name] > bt.MaxItems {
			probs = append(probs, fmt.Sprintf("%s: %d %q blocks, at most %d allowed", where, count[name], name, bt.MaxItems))
		}
		if (bt.NestingMode == "single" || bt.NestingMode == "group") && count[name] > 1 {
			probs = append(probs, fmt.Sprintf("%s: %q may appear once", where, name))
		}
	}
	return probs
}

// typeProblem says why v does not fit the attribute's type ("" when it does, or
// when v is null or unknown). Mock strings standing for provider-computed values
// (tfmodule_test.go) are not checked against non-string types.
func typeProblem(sa *schemaAttr, v cty.Value) string {
	if v.IsNull() || !v.IsWhollyKnown() {
		return ""
	}
	ty, err := sa.attrType()
	if err != nil {
		return "schema type: " + err.Error()
	}
	if _, err := convert.Convert(v, ty); err != nil {
		if v.Type() == cty.String && strings.HasPrefix(v.AsString(), mockPrefix) {
			return ""
		}
		return fmt.Sprintf("value of type %s does not fit %s: %v", v.Type().FriendlyName(), ty.FriendlyName(), err)
	}
	return ""
}

// checkValuesSchema checks an evaluated instance: attribute values convert to
// their types, and every block type (dynamic ones expanded) is within min/max.
func checkValuesSchema(where string, b *evBody, sch *schemaBlock) []string {
	var probs []string
	for _, name := range sortedKeys(b.attrs) {
		sa, ok := sch.Attributes[name]
		if !ok {
			continue // reported by the static check
		}
		if p := typeProblem(sa, b.attrs[name]); p != "" {
			probs = append(probs, where+"."+name+": "+p)
		}
	}
	count := map[string]int{}
	for _, c := range b.blocks {
		count[c.typ]++
		if bt, ok := sch.BlockTypes[c.typ]; ok {
			probs = append(probs, checkValuesSchema(where+"."+c.typ, c.body, bt.Block)...)
		}
	}
	for name, bt := range sch.BlockTypes {
		if bt.MinItems > 0 && count[name] < bt.MinItems {
			probs = append(probs, fmt.Sprintf("%s: %d %q blocks, at least %d required", where, count[name], name, bt.MinItems))
		}
		if bt.MaxItems > 0 && count[name] > bt.MaxItems {
			probs = append(probs, fmt.Sprintf("%s: %d %q blocks, at most %d allowed", where, count[name], name, bt.MaxItems))
		}
	}
	return probs
}

// tfFiles is every .tf file under dir, modules included.
func tfFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != dir {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".tf") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// checkFileSchema parses one .tf source and checks every resource and data block.
func checkFileSchema(p *providerSchema, name string, src []byte) []string {
	f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return []string{diags.Error()}
	}
	var probs []string
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "resource" && b.Type != "data" {
			continue
		}
		if len(b.Labels) != 2 {
			probs = append(probs, fmt.Sprintf("%s: %s needs two labels", b.DefRange(), b.Type))
			continue
		}
		addr := b.Labels[0] + "." + b.Labels[1]
		if b.Type == "data" {
			addr = "data." + addr
		}
		sch := p.lookup(b.Type, b.Labels[0])
		if sch == nil {
			probs = append(probs, fmt.Sprintf("%s (%s): the aws provider %s has no %s type %q", addr, b.DefRange(), providerSchemaVersion, b.Type, b.Labels[0]))
			continue
		}
		probs = append(probs, checkBodySchema(addr, b.Body, sch, true)...)
	}
	return probs
}

func TestTerraformProviderSchema(t *testing.T) {
	p := awsSchema(t)
	files := tfFiles(t, terraformDir(t))
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, prob := range checkFileSchema(p, f, src) {
			t.Error(prob)
		}
	}

	// Evaluated values, in every configuration the other tests plan.
	m := loadModule(t, terraformDir(t))
	for _, set := range schemaConfigs() {
		c := m.plan(t, set)
		for _, addr := range sortedKeys(m.blocks) {
			b := m.blocks[addr]
			sch := p.lookup(b.kind, b.typ)
			if sch == nil {
				continue
			}
			for i, in := range c.instances(t, addr) {
				for _, prob := range checkValuesSchema(fmt.Sprintf("%s[%d]", addr, i), in, sch) {
					t.Errorf("%s (vars %v)", prob, set)
				}
			}
		}
	}
}

// schemaConfigs are the variable sets the schema test evaluates: both scaling
// modes, every storage mode, with and without customer keys.
func schemaConfigs() []map[string]any {
	kms := "arn:aws:kms:eu-west-1:111122223333:key/k"
	var out []map[string]any
	for _, mode := range storageModes {
		out = append(out, baseVars(map[string]any{"storage_mode": mode}))
	}
	out = append(out, baseVars(map[string]any{"storage_mode": "ebs", "ebs_kms_key_arn": kms, "secret_kms_key_arn": kms, "create_vpc_endpoints": true, "vpc_endpoint_route_table_ids": []string{"rtb-1"}}))
	out = append(out, scalerVars(nil), scalerVars(map[string]any{"storage_mode": "efs", "secret_kms_key_arn": kms, "alarm_topic_arn": "arn:aws:sns:eu-west-1:111122223333:alerts"}))
	return out
}

// TestTerraformProviderSchemaCatchesMistakes shows that the schema check fails
// for each kind of mistake it claims to find.
func TestTerraformProviderSchemaCatchesMistakes(t *testing.T) {
	p := awsSchema(t)
	cases := []struct {
		name, src, want string
	}{
		{"unknown type", `resource "aws_ecs_servce" "x" {}`, `no resource type "aws_ecs_servce"`},
		{"unknown data type", `data "aws_iam_policy_doc" "x" {}`, `no data type`},
		{"unknown argument", `resource "aws_cloudwatch_log_group" "x" {
  name       = "a"
  retention  = 3
}`, "retention (" /* unsupported argument */},
		{"wrong literal type", `resource "aws_cloudwatch_log_group" "x" {
  retention_in_days = "a week"
}`, "does not fit number"},
		{"computed-only set", `resource "aws_cloudwatch_log_group" "x" {
  arn = "arn:aws:logs:eu-west-1:1:log-group:x"
}`, "computed-only"},
		{"required argument missing", `resource "aws_iam_role" "x" {
  name = "r"
}`, `required argument "assume_role_policy"`},
		{"required block missing", `resource "aws_autoscaling_group_tag" "x" {
  autoscaling_group_name = "g"
}`, `required block "tag"`},
		{"block written as argument", `resource "aws_ecs_service" "x" {
  name                 = "s"
  network_configuration = { subnets = ["a"] }
}`, "is a block, not an argument"},
		{"unknown nested block", `resource "aws_ecs_service" "x" {
  name = "s"
  network_config {
    subnets = ["a"]
  }
}`, "unsupported block type"},
		{"unknown dynamic block", `resource "aws_ecs_service" "x" {
  name = "s"
  dynamic "capacity_strategy" {
    for_each = []
    content {
      weight = 1
    }
  }
}`, `dynamic "capacity_strategy"`},
		{"unknown argument in dynamic content", `resource "aws_ecs_service" "x" {
  name = "s"
  dynamic "capacity_provider_strategy" {
    for_each = ["FARGATE"]
    content {
      capacity_provider = capacity_provider_strategy.value
      weigth            = 1
    }
  }
}`, "weigth"},
		{"too many blocks", `resource "aws_ecs_service" "x" {
  name = "s"
  network_configuration {
    subnets = ["a"]
  }
  network_configuration {
    subnets = ["b"]
  }
}`, "at most 1"},
		{"deprecated argument", deprecatedExample(p), "deprecated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src == "" {
				t.Skip("the schema has no deprecated argument on a simple resource")
			}
			probs := checkFileSchema(p, "mutated.tf", []byte(tc.src))
			if len(probs) == 0 {
				t.Fatalf("accepted:\n%s", tc.src)
			}
			if tc.want != "" && !strings.Contains(strings.Join(probs, "\n"), tc.want) {
				t.Errorf("problems %q do not mention %q", probs, tc.want)
			}
		})
	}
	probs := checkFileSchema(p, "ok.tf", []byte(`resource "aws_cloudwatch_log_group" "x" {
  name              = "a"
  retention_in_days = 30
}`))
	if len(probs) != 0 {
		t.Errorf("a correct resource was refused: %v", probs)
	}

	// The evaluated check: a dynamic block expanding past max_items.
	sch := p.lookup("resource", "aws_ecs_service")
	b := &evBody{attrs: map[string]cty.Value{"name": cty.StringVal("s"), "desired_count": cty.StringVal("two")}}
	for range 2 {
		b.blocks = append(b.blocks, &evBlock{typ: "network_configuration", body: &evBody{attrs: map[string]cty.Value{"subnets": cty.ListVal([]cty.Value{cty.StringVal("a")})}}})
	}
	got := strings.Join(checkValuesSchema("aws_ecs_service.x", b, sch), "\n")
	if !strings.Contains(got, "at most 1") || !strings.Contains(got, "desired_count") {
		t.Errorf("evaluated check missed a block count or a type: %q", got)
	}
}

// deprecatedExample builds a resource that sets one deprecated, settable
// top-level attribute of an ECS, IAM or CloudWatch type, so the negative test
// follows the schema rather than a guess.
func deprecatedExample(p *providerSchema) string {
	for _, typ := range sortedKeys(p.Resources) {
		if !strings.HasPrefix(typ, "aws_") {
			continue
		}
		sch := p.Resources[typ].Block
		for _, name := range sortedKeys(sch.Attributes) {
			a := sch.Attributes[name]
			if !a.Deprecated || !(a.Optional || a.Required) {
				continue
			}
			ty, err := a.attrType()
			if err != nil {
				continue
			}
			var lit string
			switch ty {
			case cty.String:
				lit = `"x"`
			case cty.Number:
				lit = "1"
			case cty.Bool:
				lit = "true"
			default:
				continue
			}
			return fmt.Sprintf("resource %q \"x\" {\n  %s = %s\n}\n", typ, name, lit)
		}
	}
	return ""
}

// TestProviderConstraintAdmitsSchemaVersion keeps versions.tf compatible with
// the provider release the schema test checks against.
func TestProviderConstraintAdmitsSchemaVersion(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	var constraint string
	for _, tb := range m.terraform {
		for _, b := range tb.Blocks {
			if b.Type != "required_providers" {
				continue
			}
			if a, ok := b.Body.Attributes["aws"]; ok {
				v, diags := a.Expr.Value(nil)
				if diags.HasErrors() {
					t.Fatal(diags.Error())
				}
				constraint = v.GetAttr("version").AsString()
			}
		}
	}
	if constraint == "" {
		t.Fatal("versions.tf pins no aws provider version")
	}
	ok, err := versionAdmits(constraint, providerSchemaVersion)
	if err != nil {
		t.Fatalf("constraint %q: %v", constraint, err)
	}
	if !ok {
		t.Errorf("aws provider constraint %q does not admit %s, the version the schema test checks", constraint, providerSchemaVersion)
	}
	for _, tc := range []struct {
		c, v string
		want bool
	}{{">= 6.0.0, < 7.0.0", "6.47.0", true}, {"~> 6.47", "6.47.0", true}, {"~> 6.48", "6.47.0", false}, {"< 6.0", "6.47.0", false}, {"= 6.47.0", "6.47.0", true}, {"!= 6.47.0", "6.47.0", false}} {
		if got, err := versionAdmits(tc.c, tc.v); err != nil || got != tc.want {
			t.Errorf("versionAdmits(%q, %q) = %v, %v; want %v", tc.c, tc.v, got, err, tc.want)
		}
	}
}

// versionAdmits evaluates a Terraform version constraint (comma-separated
// clauses of =, !=, >, >=, <, <=, ~>) for one version.
func versionAdmits(constraint, version string) (bool, error) {
	parse := func(s string) ([3]int, int, error) {
		var v [3]int
		parts := strings.Split(strings.TrimSpace(s), ".")
		if len(parts) == 0 || len(parts) > 3 {
			return v, 0, fmt.Errorf("version %q", s)
		}
		for i, p := range parts {
			if _, err := fmt.Sscanf(p, "%d", &v[i]); err != nil {
				return v, 0, fmt.Errorf("version %q", s)
			}
		}
		return v, len(parts), nil
	}
	cmp := func(a, b [3]int) int {
		for i := range 3 {
			if a[i] != b[i] {
				return a[i] - b[i]
			}
		}
		return 0
	}
	have, _, err := parse(version)
	if err != nil {
		return false, err
	}
	for _, clause := range strings.Split(constraint, ",") {
		clause = strings.TrimSpace(clause)
		op := "="
		for _, o := range []string{">=", "<=", "~>", "!=", ">", "<", "="} {
			if strings.HasPrefix(clause, o) {
				op, clause = o, strings.TrimSpace(clause[len(o):])
				break
			}
		}
		want, n, err := parse(clause)
		if err != nil {
			return false, err
		}
		c := cmp(have, want)
		ok := false
		switch op {
		case "=":
			ok = c == 0
		case "!=":
			ok = c != 0
		case ">":
			ok = c > 0
		case ">=":
			ok = c >= 0
		case "<":
			ok = c < 0
		case "<=":
			ok = c <= 0
		case "~>":
			// ~> 6.47 admits >= 6.47, < 7.0; ~> 6.47.0 admits >= 6.47.0, < 6.48.0.
			upper := want
			if n <= 1 {
				upper[0]++
			} else {
				upper[n-2]++
				for i := n - 1; i < 3; i++ {
					upper[i] = 0
				}
			}
			ok = c >= 0 && cmp(have, upper) < 0
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

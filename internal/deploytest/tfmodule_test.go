package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	"github.com/zclconf/go-cty/cty/gocty"
)

// This file is a small, offline stand-in for `terraform plan`: it parses the
// module, resolves variables (defaults, overrides, validations), evaluates locals,
// and evaluates resource and data blocks with their dynamic blocks expanded. The
// attributes of resources and data sources (ARNs, IDs, URLs) are not known without
// AWS, so every attribute the module refers to gets a known mock string,
// "mock:<type>.<name>.<attribute>". That keeps everything known (jsonencode works,
// "*" resources are visible) and lets the tests assert which resource a value
// comes from.

// mockPrefix starts every mock resource attribute value.
const mockPrefix = "mock:"

func mockRef(parts ...string) string { return mockPrefix + strings.Join(parts, ".") }

type tfVariable struct {
	name        string
	typ         cty.Type
	defaults    *typeexpr.Defaults // optional(type, default) attributes
	def         *cty.Value         // nil: required
	validations []tfValidation
	ephemeral   bool
	sensitive   bool
}

type tfValidation struct {
	condition hcl.Expression
	message   hcl.Expression
}

// tfBlock is one resource or data block.
type tfBlock struct {
	kind string // "resource" or "data"
	typ  string
	name string
	file string
	body *hclsyntax.Body
}

func (b *tfBlock) addr() string {
	if b.kind == "data" {
		return "data." + b.typ + "." + b.name
	}
	return b.typ + "." + b.name
}

type tfModule struct {
	dir       string
	files     map[string]*hcl.File
	variables map[string]*tfVariable
	locals    map[string]hclsyntax.Expression
	blocks    map[string]*tfBlock // by addr
	outputs   map[string]*hclsyntax.Body
	providers []*hclsyntax.Body
	terraform []*hclsyntax.Body
	mocks     map[string]cty.Value // root name -> mock value (resource types and "data")
	// keyedAttrs: for each resource or data block, the attributes referred to
	// after a computed index (aws_x.y[each.key].arn), plus arn, id and name.
	keyedAttrs map[string][]string
}

// loadModule parses every .tf file of dir.
func loadModule(t *testing.T, dir string) *tfModule {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no .tf files in %s (%v)", dir, err)
	}
	m := &tfModule{
		dir:       dir,
		files:     map[string]*hcl.File{},
		variables: map[string]*tfVariable{},
		locals:    map[string]hclsyntax.Expression{},
		blocks:    map[string]*tfBlock{},
		outputs:   map[string]*hclsyntax.Body{},
	}
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, diags := hclsyntax.ParseConfig(src, filepath.Base(p), hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %s", p, diags.Error())
		}
		m.files[filepath.Base(p)] = f
		body := f.Body.(*hclsyntax.Body)
		if len(body.Attributes) > 0 {
			t.Errorf("%s: top-level attributes are not valid Terraform", p)
		}
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				m.addVariable(t, b)
			case "locals":
				for name, a := range b.Body.Attributes {
					if _, dup := m.locals[name]; dup {
						t.Errorf("local.%s defined twice", name)
					}
					m.locals[name] = a.Expr
				}
			case "resource", "data":
				if len(b.Labels) != 2 {
					t.Fatalf("%s: %s block needs two labels", p, b.Type)
				}
				tb := &tfBlock{kind: b.Type, typ: b.Labels[0], name: b.Labels[1], file: filepath.Base(p), body: b.Body}
				if _, dup := m.blocks[tb.addr()]; dup {
					t.Errorf("%s defined twice", tb.addr())
				}
				m.blocks[tb.addr()] = tb
			case "output":
				m.outputs[b.Labels[0]] = b.Body
			case "provider":
				m.providers = append(m.providers, b.Body)
			case "terraform":
				m.terraform = append(m.terraform, b.Body)
			case "module", "moved", "import", "check", "removed", "ephemeral":
				// Not used by this module; nothing to evaluate.
			default:
				t.Errorf("%s: unknown top-level block %q", p, b.Type)
			}
		}
	}
	m.mocks = m.buildMocks()
	m.keyedAttrs = m.findKeyedAttrs()
	return m
}

func (m *tfModule) findKeyedAttrs() map[string][]string {
	out := map[string][]string{}
	for addr := range m.blocks {
		out[addr] = []string{"arn", "id", "name"}
	}
	for _, body := range m.allBodies() {
		for _, a := range body.Attributes {
			hclsyntax.VisitAll(a.Expr, func(n hclsyntax.Node) hcl.Diagnostics {
				rt, ok := n.(*hclsyntax.RelativeTraversalExpr)
				if !ok || len(rt.Traversal) == 0 {
					return nil
				}
				ix, ok := rt.Source.(*hclsyntax.IndexExpr)
				if !ok {
					return nil
				}
				addr := strings.TrimPrefix(traversalString(ix.Collection), "")
				attr, ok := rt.Traversal[0].(hcl.TraverseAttr)
				if !ok {
					return nil
				}
				if _, known := m.blocks[addr]; known && !slices.Contains(out[addr], attr.Name) {
					out[addr] = append(out[addr], attr.Name)
				}
				return nil
			})
		}
	}
	return out
}

func (m *tfModule) addVariable(t *testing.T, b *hclsyntax.Block) {
	t.Helper()
	v := &tfVariable{name: b.Labels[0], typ: cty.DynamicPseudoType}
	if a, ok := b.Body.Attributes["type"]; ok {
		ty, defaults, diags := typeexpr.TypeConstraintWithDefaults(a.Expr)
		if diags.HasErrors() {
			t.Fatalf("variable %s: type: %s", v.name, diags.Error())
		}
		v.typ, v.defaults = ty, defaults
	} else {
		t.Errorf("variable %s has no type", v.name)
	}
	if _, ok := b.Body.Attributes["description"]; !ok {
		t.Errorf("variable %s has no description", v.name)
	}
	if a, ok := b.Body.Attributes["default"]; ok {
		val, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("variable %s: default: %s", v.name, diags.Error())
		}
		if !val.IsNull() {
			if v.defaults != nil {
				val = v.defaults.Apply(val)
			}
			conv, err := convert.Convert(val, v.typ)
			if err != nil {
				t.Fatalf("variable %s: default does not fit its type: %v", v.name, err)
			}
			val = conv
		} else {
			val = cty.NullVal(v.typ)
		}
		v.def = &val
	}
	for _, flag := range []string{"ephemeral", "sensitive"} {
		if a, ok := b.Body.Attributes[flag]; ok {
			val, diags := a.Expr.Value(nil)
			if diags.HasErrors() || val.Type() != cty.Bool {
				t.Fatalf("variable %s: %s must be a bool", v.name, flag)
			}
			if flag == "ephemeral" {
				v.ephemeral = val.True()
			} else {
				v.sensitive = val.True()
			}
		}
	}
	for _, vb := range b.Body.Blocks {
		if vb.Type != "validation" {
			continue
		}
		c, ok1 := vb.Body.Attributes["condition"]
		msg, ok2 := vb.Body.Attributes["error_message"]
		if !ok1 || !ok2 {
			t.Fatalf("variable %s: validation needs condition and error_message", v.name)
		}
		v.validations = append(v.validations, tfValidation{condition: c.Expr, message: msg.Expr})
	}
	if _, dup := m.variables[v.name]; dup {
		t.Errorf("variable %s defined twice", v.name)
	}
	m.variables[v.name] = v
}

// allBodies yields every body of the module, nested ones included.
func (m *tfModule) allBodies() []*hclsyntax.Body {
	var out []*hclsyntax.Body
	var walk func(b *hclsyntax.Body)
	walk = func(b *hclsyntax.Body) {
		out = append(out, b)
		for _, c := range b.Blocks {
			walk(c.Body)
		}
	}
	for _, f := range m.files {
		walk(f.Body.(*hclsyntax.Body))
	}
	return out
}

// buildMocks gives every referenced resource and data attribute a known string.
// An index step ([0] or ["key"]) becomes a one-element tuple or a keyed object, so
// `aws_efs_file_system.this[0].arn` evaluates whether or not the resource's count
// is 1 in the configuration at hand (HCL evaluates both arms of a conditional).
func (m *tfModule) buildMocks() map[string]cty.Value {
	type node struct {
		children map[string]*node
		index    map[string]*node // from [n] or ["k"]
		numeric  bool
		leaf     string
	}
	newNode := func() *node { return &node{children: map[string]*node{}, index: map[string]*node{}} }
	roots := map[string]*node{}
	reserved := map[string]bool{"var": true, "local": true, "count": true, "each": true, "path": true, "terraform": true, "self": true}
	for _, b := range m.blocks {
		if b.kind == "resource" {
			reserved[b.typ] = false
		}
	}
	var add func(n *node, tr hcl.Traversal, path []string)
	add = func(n *node, tr hcl.Traversal, path []string) {
		if len(tr) == 0 {
			n.leaf = mockRef(path...)
			return
		}
		switch s := tr[0].(type) {
		case hcl.TraverseAttr:
			c, ok := n.children[s.Name]
			if !ok {
				c = newNode()
				n.children[s.Name] = c
			}
			add(c, tr[1:], append(path, s.Name))
		case hcl.TraverseIndex:
			key := s.Key
			var k string
			if key.Type() == cty.Number {
				n.numeric = true
				k = key.AsBigFloat().String()
			} else if key.Type() == cty.String {
				k = key.AsString()
			} else {
				return
			}
			c, ok := n.index[k]
			if !ok {
				c = newNode()
				n.index[k] = c
			}
			add(c, tr[1:], path)
		default:
			n.leaf = mockRef(path...)
		}
	}
	for _, body := range m.allBodies() {
		var exprs []hclsyntax.Expression
		for _, a := range body.Attributes {
			exprs = append(exprs, a.Expr)
		}
		for _, e := range exprs {
			for _, tr := range e.Variables() {
				root := tr.RootName()
				if reserved[root] {
					continue
				}
				r, ok := roots[root]
				if !ok {
					r = newNode()
					roots[root] = r
				}
				add(r, tr[1:], []string{root})
			}
		}
	}
	var val func(n *node) cty.Value
	val = func(n *node) cty.Value {
		if len(n.index) > 0 {
			if n.numeric {
				max := 0
				for k := range n.index {
					var i int
					fmt.Sscan(k, &i)
					if i+1 > max {
						max = i + 1
					}
				}
				elems := make([]cty.Value, max)
				for i := range elems {
					c, ok := n.index[fmt.Sprint(i)]
					if !ok {
						c = newNode()
					}
					elems[i] = val(c)
				}
				return cty.TupleVal(elems)
			}
			attrs := map[string]cty.Value{}
			for k, c := range n.index {
				attrs[k] = val(c)
			}
			return cty.ObjectVal(attrs)
		}
		if len(n.children) > 0 {
			attrs := map[string]cty.Value{}
			for k, c := range n.children {
				attrs[k] = val(c)
			}
			return cty.ObjectVal(attrs)
		}
		if n.leaf != "" {
			return cty.StringVal(n.leaf)
		}
		return cty.DynamicVal
	}
	out := map[string]cty.Value{}
	for k, n := range roots {
		out[k] = val(n)
	}
	return out
}

// tfFunctions is the part of Terraform's function library this module uses. A
// function missing here fails the evaluation loudly, never silently.
func tfFunctions() map[string]function.Function {
	to := func(ty cty.Type) function.Function {
		return function.New(&function.Spec{
			Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType, AllowNull: true, AllowDynamicType: true}},
			Type:   function.StaticReturnType(ty),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				return convert.Convert(args[0], ty)
			},
		})
	}
	toCollection := func(kind string) function.Function {
		return function.New(&function.Spec{
			Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType}},
			Type: func(args []cty.Value) (cty.Type, error) {
				ety, ok := unifiedElementType(args[0].Type())
				if !ok {
					return cty.NilType, fmt.Errorf("to%s: elements have no common type", kind)
				}
				switch kind {
				case "set":
					return cty.Set(ety), nil
				case "list":
					return cty.List(ety), nil
				default:
					return cty.Map(ety), nil
				}
			},
			Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
				return convert.Convert(args[0], retType)
			},
		})
	}
	alltrue := function.New(&function.Spec{
		Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			for it := args[0].ElementIterator(); it.Next(); {
				_, v := it.Element()
				if v.IsNull() || v.False() {
					return cty.False, nil
				}
			}
			return cty.True, nil
		},
	})
	return map[string]function.Function{
		"alltrue":     alltrue,
		"can":         tryfunc.CanFunc,
		"coalesce":    stdlib.CoalesceFunc,
		"concat":      stdlib.ConcatFunc,
		"contains":    stdlib.ContainsFunc,
		"flatten":     stdlib.FlattenFunc,
		"floor":       stdlib.FloorFunc,
		"format":      stdlib.FormatFunc,
		"join":        stdlib.JoinFunc,
		"jsonencode":  stdlib.JSONEncodeFunc,
		"keys":        stdlib.KeysFunc,
		"length":      tfLength,
		"lookup":      stdlib.LookupFunc,
		"merge":       stdlib.MergeFunc,
		"range":       stdlib.RangeFunc,
		"regex":       stdlib.RegexFunc,
		"sort":        stdlib.SortFunc,
		"startswith":  strPredicate(strings.HasPrefix),
		"strcontains": strPredicate(strings.Contains),
		"upper":       stdlib.UpperFunc,
		"tolist":      toCollection("list"),
		"tomap":       toCollection("map"),
		"tonumber":    to(cty.Number),
		"toset":       toCollection("set"),
		"tostring":    to(cty.String),
		"try":         tryfunc.TryFunc,
		"values":      stdlib.ValuesFunc,
	}
}

// tfLength is Terraform's length: collections and strings.
var tfLength = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true, AllowUnknown: true}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if args[0].Type() == cty.String {
			return stdlib.Strlen(args[0])
		}
		return stdlib.Length(args[0])
	},
})

// strPredicate builds Terraform's startswith/strcontains.
func strPredicate(f func(s, sub string) bool) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "s", Type: cty.String}, {Name: "sub", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(f(args[0].AsString(), args[1].AsString())), nil
		},
	})
}

func unifiedElementType(ty cty.Type) (cty.Type, bool) {
	switch {
	case ty.IsListType() || ty.IsSetType() || ty.IsMapType():
		return ty.ElementType(), true
	case ty.IsTupleType():
		if len(ty.TupleElementTypes()) == 0 {
			return cty.DynamicPseudoType, true
		}
		ety, _ := convert.UnifyUnsafe(ty.TupleElementTypes())
		return ety, ety != cty.NilType
	case ty.IsObjectType():
		var tys []cty.Type
		for _, at := range ty.AttributeTypes() {
			tys = append(tys, at)
		}
		if len(tys) == 0 {
			return cty.DynamicPseudoType, true
		}
		ety, _ := convert.UnifyUnsafe(tys)
		return ety, ety != cty.NilType
	}
	return cty.NilType, false
}

// tfConfig is the module evaluated for one set of variable values.
type tfConfig struct {
	m      *tfModule
	vars   map[string]cty.Value
	locals map[string]cty.Value
	ctx    *hcl.EvalContext
}

// evalErr is returned by plan when a variable validation fails, so tests can
// assert that bad input is refused.
type evalErr struct{ msgs []string }

func (e *evalErr) Error() string { return strings.Join(e.msgs, "; ") }

// plan evaluates the module with the given variable values (Go values, converted
// to the declared types), like `terraform plan -var ...` without a provider.
func (m *tfModule) plan(t *testing.T, set map[string]any) *tfConfig {
	t.Helper()
	c, err := m.tryPlan(t, set)
	if err != nil {
		t.Fatalf("plan %v: %v", set, err)
	}
	return c
}

func (m *tfModule) tryPlan(t *testing.T, set map[string]any) (*tfConfig, error) {
	t.Helper()
	vars := map[string]cty.Value{}
	for name, v := range m.variables {
		if raw, ok := set[name]; ok {
			val, err := goToCty(raw)
			if err != nil {
				t.Fatalf("var.%s: %v", name, err)
			}
			if v.defaults != nil && !val.IsNull() {
				val = v.defaults.Apply(val)
			}
			conv, err := convert.Convert(val, v.typ)
			if err != nil {
				t.Fatalf("var.%s = %#v does not fit its type %s: %v", name, raw, v.typ.FriendlyName(), err)
			}
			vars[name] = conv
			continue
		}
		if v.def == nil {
			return nil, &evalErr{msgs: []string{fmt.Sprintf("var.%s is required", name)}}
		}
		vars[name] = *v.def
	}
	for name := range set {
		if _, ok := m.variables[name]; !ok {
			t.Fatalf("var.%s is not declared", name)
		}
	}
	c := &tfConfig{m: m, vars: vars, locals: map[string]cty.Value{}}
	c.ctx = c.newCtx()

	var failed []string
	names := sortedKeys(m.variables)
	for _, name := range names {
		for _, val := range m.variables[name].validations {
			ok, diags := val.condition.Value(c.ctx)
			if diags.HasErrors() {
				t.Fatalf("var.%s validation: %s", name, diags.Error())
			}
			if ok.IsNull() || !ok.IsKnown() || ok.Type() != cty.Bool {
				t.Fatalf("var.%s validation condition is not a known bool", name)
			}
			if ok.False() {
				msg, _ := val.message.Value(c.ctx)
				failed = append(failed, fmt.Sprintf("var.%s: %s", name, msg.AsString()))
			}
		}
	}
	if len(failed) > 0 {
		return nil, &evalErr{msgs: failed}
	}

	// Locals may refer to each other in any order: evaluate those whose local.*
	// references are ready until none is left.
	pending := sortedKeys(m.locals)
	for len(pending) > 0 {
		var next []string
		for _, name := range pending {
			ready := true
			for _, tr := range m.locals[name].Variables() {
				if tr.RootName() != "local" || len(tr) < 2 {
					continue
				}
				if a, ok := tr[1].(hcl.TraverseAttr); ok {
					if _, done := c.locals[a.Name]; !done {
						if _, exists := m.locals[a.Name]; !exists {
							t.Fatalf("local.%s refers to undefined local.%s", name, a.Name)
						}
						ready = false
					}
				}
			}
			if !ready {
				next = append(next, name)
				continue
			}
			v, diags := m.locals[name].Value(c.ctx)
			if diags.HasErrors() {
				t.Fatalf("local.%s: %s", name, diags.Error())
			}
			c.locals[name] = v
			c.ctx = c.newCtx()
		}
		if len(next) == len(pending) {
			t.Fatalf("locals refer to each other in a cycle: %v", next)
		}
		pending = next
	}
	return c, nil
}

func (c *tfConfig) newCtx() *hcl.EvalContext {
	vars := map[string]cty.Value{
		"var":   cty.ObjectVal(c.vars),
		"local": cty.ObjectVal(c.locals),
	}
	for k, v := range c.m.mocks {
		vars[k] = v
	}
	ctx := &hcl.EvalContext{Variables: vars, Functions: tfFunctions()}
	// A resource with for_each is referred to as type.name[each.key].attr (or
	// iterated): mock it as an object keyed like its for_each, once that can be
	// evaluated, each key holding mock strings "mock:type.name[key].attr".
	for _, addr := range sortedKeys(c.m.blocks) {
		b := c.m.blocks[addr]
		fe, ok := b.body.Attributes["for_each"]
		if !ok {
			continue
		}
		coll, diags := fe.Expr.Value(ctx)
		if diags.HasErrors() || !coll.IsWhollyKnown() || coll.IsNull() {
			continue
		}
		keys := map[string]cty.Value{}
		for it := coll.ElementIterator(); it.Next(); {
			k, v := it.Element()
			if coll.Type().IsSetType() {
				k = v
			}
			if k.Type() != cty.String {
				continue
			}
			attrs := map[string]cty.Value{}
			for _, a := range c.m.keyedAttrs[addr] {
				attrs[a] = cty.StringVal(fmt.Sprintf("%s%s[%s].%s", mockPrefix, addr, k.AsString(), a))
			}
			keys[k.AsString()] = cty.ObjectVal(attrs)
		}
		path := []string{b.typ, b.name}
		if b.kind == "data" {
			path = []string{"data", b.typ, b.name}
		}
		vars[path[0]] = setPath(vars[path[0]], path[1:], cty.ObjectVal(keys))
	}
	return ctx
}

// setPath returns obj with the attribute at path replaced by v, creating
// objects on the way.
func setPath(obj cty.Value, path []string, v cty.Value) cty.Value {
	if len(path) == 0 {
		return v
	}
	attrs := map[string]cty.Value{}
	if obj != cty.NilVal && obj.IsKnown() && !obj.IsNull() && obj.Type().IsObjectType() {
		for k := range obj.Type().AttributeTypes() {
			attrs[k] = obj.GetAttr(k)
		}
	}
	cur := cty.NilVal
	if x, ok := attrs[path[0]]; ok {
		cur = x
	}
	attrs[path[0]] = setPath(cur, path[1:], v)
	return cty.ObjectVal(attrs)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// evBody is an evaluated block body: attributes and nested blocks with dynamic
// blocks expanded.
type evBody struct {
	attrs  map[string]cty.Value
	exprs  map[string]hclsyntax.Expression
	blocks []*evBlock
}

type evBlock struct {
	typ    string
	labels []string
	body   *evBody
}

func (b *evBody) all(typ string) []*evBody {
	var out []*evBody
	for _, c := range b.blocks {
		if c.typ == typ {
			out = append(out, c.body)
		}
	}
	return out
}

func (b *evBody) one(t *testing.T, typ string) *evBody {
	t.Helper()
	all := b.all(typ)
	if len(all) != 1 {
		t.Fatalf("want exactly one %q block, got %d", typ, len(all))
	}
	return all[0]
}

// str returns a known string attribute ("" when absent or null).
func (b *evBody) str(name string) string {
	v, ok := b.attrs[name]
	if !ok || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return ""
	}
	return v.AsString()
}

func (b *evBody) strs(name string) []string {
	v, ok := b.attrs[name]
	if !ok || v.IsNull() {
		return nil
	}
	return ctyStrings(v)
}

func ctyStrings(v cty.Value) []string {
	if v.IsNull() || !v.CanIterateElements() {
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsKnown() && !e.IsNull() && e.Type() == cty.String {
			out = append(out, e.AsString())
		} else {
			out = append(out, "<non-string>")
		}
	}
	return out
}

// evalBody evaluates a body in ctx, expanding dynamic blocks.
func evalBody(t *testing.T, where string, body *hclsyntax.Body, ctx *hcl.EvalContext) *evBody {
	t.Helper()
	out := &evBody{attrs: map[string]cty.Value{}, exprs: map[string]hclsyntax.Expression{}}
	for name, a := range body.Attributes {
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("%s.%s: %s", where, name, diags.Error())
		}
		out.attrs[name] = v
		out.exprs[name] = a.Expr
	}
	blocks := append([]*hclsyntax.Block(nil), body.Blocks...)
	sort.SliceStable(blocks, func(i, j int) bool { return blocks[i].Range().Start.Byte < blocks[j].Range().Start.Byte })
	for _, b := range blocks {
		if b.Type != "dynamic" {
			out.blocks = append(out.blocks, &evBlock{typ: b.Type, labels: b.Labels, body: evalBody(t, where+"."+b.Type, b.Body, ctx)})
			continue
		}
		name := b.Labels[0]
		fe, ok := b.Body.Attributes["for_each"]
		if !ok {
			t.Fatalf("%s: dynamic %q has no for_each", where, name)
		}
		iter := name
		if a, ok := b.Body.Attributes["iterator"]; ok {
			iter = hcl.ExprAsKeyword(a.Expr)
		}
		coll, diags := fe.Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("%s: dynamic %q for_each: %s", where, name, diags.Error())
		}
		if !coll.IsWhollyKnown() || coll.IsNull() {
			t.Fatalf("%s: dynamic %q for_each is not known", where, name)
		}
		var content *hclsyntax.Body
		for _, cb := range b.Body.Blocks {
			if cb.Type == "content" {
				content = cb.Body
			}
		}
		if content == nil {
			t.Fatalf("%s: dynamic %q has no content", where, name)
		}
		for it := coll.ElementIterator(); it.Next(); {
			k, v := it.Element()
			child := ctx.NewChild()
			child.Variables = map[string]cty.Value{iter: cty.ObjectVal(map[string]cty.Value{"key": k, "value": v})}
			out.blocks = append(out.blocks, &evBlock{typ: name, body: evalBody(t, where+"."+name, content, child)})
		}
	}
	return out
}

// instances evaluates a resource or data block: one evBody per instance (count
// or for_each), none when the configuration leaves it out.
func (c *tfConfig) instances(t *testing.T, addr string) []*evBody {
	t.Helper()
	b, ok := c.m.blocks[addr]
	if !ok {
		t.Fatalf("%s is not in the module", addr)
	}
	body := b.body
	var out []*evBody
	evalWith := func(extra map[string]cty.Value) {
		ctx := c.ctx.NewChild()
		ctx.Variables = extra
		// meta-arguments are not part of the resource's own body.
		filtered := &hclsyntax.Body{Attributes: hclsyntax.Attributes{}, Blocks: nil, SrcRange: body.SrcRange, EndRange: body.EndRange}
		for k, a := range body.Attributes {
			if k == "count" || k == "for_each" || k == "depends_on" || k == "provider" {
				continue
			}
			filtered.Attributes[k] = a
		}
		for _, blk := range body.Blocks {
			if blk.Type == "lifecycle" {
				continue
			}
			filtered.Blocks = append(filtered.Blocks, blk)
		}
		out = append(out, evalBody(t, addr, filtered, ctx))
	}
	if a, ok := body.Attributes["count"]; ok {
		n, diags := a.Expr.Value(c.ctx)
		if diags.HasErrors() {
			t.Fatalf("%s.count: %s", addr, diags.Error())
		}
		var count int
		if err := gocty.FromCtyValue(n, &count); err != nil {
			t.Fatalf("%s.count: %v", addr, err)
		}
		for i := 0; i < count; i++ {
			evalWith(map[string]cty.Value{"count": cty.ObjectVal(map[string]cty.Value{"index": cty.NumberIntVal(int64(i))})})
		}
		return out
	}
	if a, ok := body.Attributes["for_each"]; ok {
		coll, diags := a.Expr.Value(c.ctx)
		if diags.HasErrors() {
			t.Fatalf("%s.for_each: %s", addr, diags.Error())
		}
		if !coll.IsWhollyKnown() {
			t.Fatalf("%s.for_each is not known at plan time", addr)
		}
		for it := coll.ElementIterator(); it.Next(); {
			k, v := it.Element()
			if coll.Type().IsSetType() {
				k = v
			}
			evalWith(map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": k, "value": v})})
		}
		return out
	}
	evalWith(nil)
	return out
}

// only returns the single instance of addr, failing when there is not exactly one.
func (c *tfConfig) only(t *testing.T, addr string) *evBody {
	t.Helper()
	in := c.instances(t, addr)
	if len(in) != 1 {
		t.Fatalf("%s: want 1 instance, got %d", addr, len(in))
	}
	return in[0]
}

// local returns an evaluated local value.
func (c *tfConfig) local(t *testing.T, name string) cty.Value {
	t.Helper()
	v, ok := c.locals[name]
	if !ok {
		t.Fatalf("local.%s is not defined", name)
	}
	return v
}

// refersTo reports whether expr is exactly a reference to a data source's json
// attribute, e.g. data.aws_iam_policy_document.task.json or ...efs[0].json.
var policyDocRef = regexp.MustCompile(`^data\.aws_iam_policy_document\.([a-z0-9_]+)(\[0\]|\[each\.key\])?\.json$`)

func traversalString(expr hclsyntax.Expression) string {
	if rt, ok := expr.(*hclsyntax.RelativeTraversalExpr); ok {
		// type.name[each.key].attr
		ix, ok := rt.Source.(*hclsyntax.IndexExpr)
		if !ok {
			return ""
		}
		base, key := traversalString(ix.Collection), traversalString(ix.Key)
		if base == "" || key == "" {
			return ""
		}
		var sb strings.Builder
		sb.WriteString(base + "[" + key + "]")
		for _, step := range rt.Traversal {
			if a, ok := step.(hcl.TraverseAttr); ok {
				sb.WriteString("." + a.Name)
			} else {
				return ""
			}
		}
		return sb.String()
	}
	st, ok := expr.(*hclsyntax.ScopeTraversalExpr)
	if !ok {
		return ""
	}
	var sb strings.Builder
	for i, step := range st.Traversal {
		switch s := step.(type) {
		case hcl.TraverseRoot:
			sb.WriteString(s.Name)
		case hcl.TraverseAttr:
			sb.WriteString("." + s.Name)
		case hcl.TraverseIndex:
			if s.Key.Type() == cty.Number {
				sb.WriteString("[" + s.Key.AsBigFloat().String() + "]")
			} else {
				sb.WriteString(fmt.Sprintf("[%q]", s.Key.AsString()))
			}
		default:
			_ = i
			sb.WriteString(".?")
		}
	}
	return sb.String()
}

// goToCty converts a test's Go value (string, bool, number, []string,
// map[string]string, nil) to cty.
func goToCty(v any) (cty.Value, error) {
	if v == nil {
		return cty.NullVal(cty.DynamicPseudoType), nil
	}
	if m, ok := v.(map[string]any); ok {
		attrs := map[string]cty.Value{}
		for k, x := range m {
			cv, err := goToCty(x)
			if err != nil {
				return cty.NilVal, fmt.Errorf("%s: %w", k, err)
			}
			attrs[k] = cv
		}
		return cty.ObjectVal(attrs), nil
	}
	ty, err := gocty.ImpliedType(v)
	if err != nil {
		return cty.NilVal, err
	}
	return gocty.ToCtyValue(v, ty)
}

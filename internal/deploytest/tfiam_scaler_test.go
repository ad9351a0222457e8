package deploytest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The scaler's IAM policy is written against what `azp-entrypoint scale` really
// calls. scalerECSOperations is the documented list (CONTRACT.md, "Scaling", and
// the local ECS of issue 14): the ECS operations the scaler and its `check` use.
// Once internal/scale exists, the test derives the list from its code instead
// (every ecs.<Operation>Input it builds) and fails when the two disagree with
// the policy.
var scalerECSOperations = []string{"RunTask", "StopTask", "DescribeTasks", "ListTasks", "DescribeTaskDefinition", "DescribeClusters"}

// iamActionsFor maps an API operation to the IAM actions it needs. RunTask with
// tags needs ecs:TagResource on the new task, and iam:PassRole for the task
// definition's task and execution roles.
var iamActionsFor = map[string][]string{
	"ecs:RunTask":                {"ecs:RunTask", "ecs:TagResource", "iam:PassRole"},
	"ecs:StopTask":               {"ecs:StopTask"},
	"ecs:DescribeTasks":          {"ecs:DescribeTasks"},
	"ecs:ListTasks":              {"ecs:ListTasks"},
	"ecs:DescribeTaskDefinition": {"ecs:DescribeTaskDefinition"},
	"ecs:DescribeClusters":       {"ecs:DescribeClusters"},
}

// wildcardResourceActions are the only actions allowed on Resource "*": those
// for which the Service Authorization Reference lists no resource type (or, for
// ListTasks, only a container instance, so the ecs:cluster condition scopes it).
// The value is the condition key that must accompany the "*" ("" for none).
var wildcardResourceActions = map[string]string{
	"ecs:DescribeTaskDefinition": "",
	"ecs:ListTasks":              "ecs:cluster",
	"ecr:GetAuthorizationToken":  "",
}

// scalerCallsFromCode returns the ECS operations internal/scale builds inputs
// for (ecs.<Op>Input composite literals or new(ecs.<Op>Input)), or nil when the
// package does not exist yet.
func scalerCallsFromCode(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "internal", "scale")
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	ops := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		for _, op := range ecsOperationsIn(f) {
			ops[op] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sortedKeys(ops)
}

// ecsOperationsIn finds the ECS operations one file builds inputs for.
func ecsOperationsIn(f *ast.File) []string {
	alias := ""
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if strings.HasSuffix(path, "/aws-sdk-go-v2/service/ecs") {
			alias = "ecs"
			if imp.Name != nil {
				alias = imp.Name.Name
			}
		}
	}
	if alias == "" {
		return nil
	}
	var ops []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == alias && strings.HasSuffix(sel.Sel.Name, "Input") && sel.Sel.Name != "Input" {
			ops = append(ops, strings.TrimSuffix(sel.Sel.Name, "Input"))
		}
		return true
	})
	return ops
}

// scalerNeeds is the set of IAM actions the scaler needs, derived from its ECS
// calls (code when present, else the documented list) and its secret.
func scalerNeeds(t *testing.T, withKMS bool) (need []string, source string) {
	t.Helper()
	ops, source := scalerCallsFromCode(t), "internal/scale"
	if ops == nil {
		ops, source = scalerECSOperations, "the documented list (internal/scale not merged yet)"
	}
	set := map[string]bool{}
	for _, op := range ops {
		acts, ok := iamActionsFor["ecs:"+op]
		if !ok {
			t.Errorf("the scaler calls ecs:%s, which this test does not map to IAM actions: add it to iamActionsFor and to the scaler's policy", op)
			continue
		}
		for _, a := range acts {
			set[a] = true
		}
	}
	set["secretsmanager:GetSecretValue"] = true
	if withKMS {
		set["kms:Decrypt"] = true
	}
	return sortedKeys(set), source
}

// checkScalerPolicy returns every way the policy differs from what the scaler
// needs, for the profile whose agent task definition family is family.
func checkScalerPolicy(sts []policyStatement, need []string, family string) []string {
	var probs []string
	granted := map[string]bool{}
	for _, s := range sts {
		where := "statement " + s.sid
		if s.effect != "Allow" {
			continue
		}
		for _, a := range s.actions {
			granted[a] = true
			if strings.Contains(a, "*") {
				probs = append(probs, fmt.Sprintf("%s: wildcard action %s", where, a))
				continue
			}
			if !slices.Contains(need, a) {
				probs = append(probs, fmt.Sprintf("%s: grants %s, which the scaler does not call", where, a))
			}
		}
		clusterCond := func() bool {
			v := s.conditions["ecs:cluster"]
			return len(v) == 1 && strings.HasSuffix(v[0], ":cluster/azp-agent")
		}
		for _, r := range s.resources {
			if strings.Contains(r, "*") && !strings.HasSuffix(r, ":task-definition/"+family+":*") && !strings.HasSuffix(r, ":task/azp-agent/*") {
				for _, a := range s.actions {
					cond, ok := wildcardResourceActions[a]
					if !ok {
						probs = append(probs, fmt.Sprintf("%s: %s on resource %q; \"*\" only for %v", where, a, r, sortedKeys(wildcardResourceActions)))
					} else if cond != "" && len(s.conditions[cond]) == 0 {
						probs = append(probs, fmt.Sprintf("%s: %s on \"*\" needs the %s condition", where, a, cond))
					}
				}
			}
		}
		for _, a := range s.actions {
			switch a {
			case "ecs:RunTask":
				for _, r := range s.resources {
					if !strings.HasSuffix(r, ":task-definition/"+family+":*") {
						probs = append(probs, fmt.Sprintf("%s: RunTask on %q, want only the family %s", where, r, family))
					}
				}
				if !clusterCond() {
					probs = append(probs, where+": RunTask needs the ecs:cluster condition")
				}
			case "ecs:StopTask", "ecs:DescribeTasks", "ecs:ListTasks":
				if !clusterCond() {
					probs = append(probs, fmt.Sprintf("%s: %s needs the ecs:cluster condition", where, a))
				}
			case "ecs:TagResource":
				if !slices.Equal(s.conditions["ecs:CreateAction"], []string{"RunTask"}) {
					probs = append(probs, where+": TagResource only on create (ecs:CreateAction = RunTask)")
				}
			case "iam:PassRole":
				want := []string{mockRef("aws_iam_role", "execution", "arn"), mockRef("aws_iam_role", "task", "arn")}
				if !slices.Equal(slices.Sorted(slices.Values(s.resources)), want) {
					probs = append(probs, fmt.Sprintf("%s: PassRole on %v, want exactly the agent's task and execution roles", where, s.resources))
				}
				if !slices.Equal(s.conditions["iam:PassedToService"], []string{"ecs-tasks.amazonaws.com"}) {
					probs = append(probs, where+": PassRole needs iam:PassedToService = ecs-tasks.amazonaws.com")
				}
			case "secretsmanager:GetSecretValue":
				if !slices.Equal(s.resources, []string{mockRef("aws_secretsmanager_secret", "azp", "arn")}) {
					probs = append(probs, fmt.Sprintf("%s: GetSecretValue on %v, want the one secret", where, s.resources))
				}
			case "kms:Decrypt":
				if len(s.conditions["kms:ViaService"]) != 1 || !strings.HasPrefix(s.conditions["kms:ViaService"][0], "secretsmanager.") {
					probs = append(probs, where+": kms:Decrypt only through Secrets Manager")
				}
			}
		}
	}
	for _, a := range need {
		if !granted[a] {
			probs = append(probs, "missing "+a+", which the scaler calls")
		}
	}
	return probs
}

func TestScalerIAMMatchesCalls(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	kms := "arn:aws:kms:eu-west-1:111122223333:key/k"
	for _, withKMS := range []bool{false, true} {
		set := map[string]any{}
		if withKMS {
			set["secret_kms_key_arn"] = kms
		}
		c := m.plan(t, scalerVars(set))
		need, source := scalerNeeds(t, withKMS)
		t.Logf("scaler actions from %s: %v", source, need)
		docs := scalerPolicyDocs(t, c)
		if len(docs) != 2 {
			t.Fatalf("want one scaler policy per profile (2), got %d", len(docs))
		}
		for key, sts := range docs {
			for _, p := range checkScalerPolicy(sts, need, "azp-agent-"+key) {
				t.Errorf("scaler policy %s (kms=%v): %s", key, withKMS, p)
			}
		}
		// Each role gets its own profile's policy.
		for _, rp := range c.instances(t, "aws_iam_role_policy.scaler") {
			if ref := traversalString(m.blocks["aws_iam_role_policy.scaler"].body.Attributes["policy"].Expr); ref != "data.aws_iam_policy_document.scaler[each.key].json" {
				t.Errorf("aws_iam_role_policy.scaler: policy = %s", ref)
			}
			if !strings.HasPrefix(rp.str("role"), mockPrefix+"aws_iam_role.scaler[") {
				t.Errorf("aws_iam_role_policy.scaler: role %q is not a scaler role", rp.str("role"))
			}
		}
	}
}

// scalerPolicyDocs evaluates data.aws_iam_policy_document.scaler per profile.
func scalerPolicyDocs(t *testing.T, c *tfConfig) map[string][]policyStatement {
	t.Helper()
	out := map[string][]policyStatement{}
	profiles := c.local(t, "scaler_profiles")
	keys := []string{}
	for it := profiles.ElementIterator(); it.Next(); {
		k, _ := it.Element()
		keys = append(keys, k.AsString())
	}
	slices.Sort(keys)
	docs := c.instances(t, "data.aws_iam_policy_document.scaler")
	if len(docs) != len(keys) {
		t.Fatalf("%d scaler policies for %d profiles", len(docs), len(keys))
	}
	// instances follow the for_each map's (sorted) key order.
	for i, doc := range docs {
		for _, st := range doc.all("statement") {
			ps := policyStatement{doc: "scaler", sid: st.str("sid"), effect: st.str("effect"), actions: st.strs("actions"), resources: st.strs("resources"), conditions: map[string][]string{}}
			if ps.effect == "" {
				ps.effect = "Allow"
			}
			for _, cond := range st.all("condition") {
				ps.conditions[cond.str("variable")] = cond.strs("values")
			}
			out[keys[i]] = append(out[keys[i]], ps)
		}
	}
	return out
}

// TestScalerIAMCheckCatchesMutations shows the check fails for a policy that
// lacks a needed action, grants a wildcard or a "*" resource outside the list,
// or loses a condition.
func TestScalerIAMCheckCatchesMutations(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	c := m.plan(t, scalerVars(nil))
	need, _ := scalerNeeds(t, false)
	good := scalerPolicyDocs(t, c)["small"]
	if p := checkScalerPolicy(good, need, "azp-agent-small"); len(p) != 0 {
		t.Fatalf("the real policy fails: %v", p)
	}
	clone := func() []policyStatement {
		out := make([]policyStatement, len(good))
		for i, s := range good {
			s.actions = slices.Clone(s.actions)
			s.resources = slices.Clone(s.resources)
			conds := map[string][]string{}
			for k, v := range s.conditions {
				conds[k] = slices.Clone(v)
			}
			s.conditions = conds
			out[i] = s
		}
		return out
	}
	find := func(sts []policyStatement, action string) *policyStatement {
		for i := range sts {
			if slices.Contains(sts[i].actions, action) {
				return &sts[i]
			}
		}
		t.Fatalf("no statement grants %s", action)
		return nil
	}
	mutations := []struct {
		name   string
		mutate func([]policyStatement) []policyStatement
		want   string
	}{
		{"RunTask removed", func(s []policyStatement) []policyStatement {
			st := find(s, "ecs:RunTask")
			st.actions = nil
			return s
		}, "missing ecs:RunTask"},
		{"StopTask removed", func(s []policyStatement) []policyStatement {
			st := find(s, "ecs:StopTask")
			st.actions = slices.DeleteFunc(st.actions, func(a string) bool { return a == "ecs:StopTask" })
			return s
		}, "missing ecs:StopTask"},
		{"wildcard action", func(s []policyStatement) []policyStatement {
			find(s, "ecs:DescribeTasks").actions = append(find(s, "ecs:DescribeTasks").actions, "ecs:*")
			return s
		}, "wildcard action"},
		{"extra action", func(s []policyStatement) []policyStatement {
			find(s, "ecs:StopTask").actions = append(find(s, "ecs:StopTask").actions, "ecs:DeleteCluster")
			return s
		}, "does not call"},
		{"star resource on StopTask", func(s []policyStatement) []policyStatement {
			find(s, "ecs:StopTask").resources = []string{"*"}
			return s
		}, "on resource \"*\""},
		{"RunTask on any family", func(s []policyStatement) []policyStatement {
			find(s, "ecs:RunTask").resources = []string{"arn:aws:ecs:eu-west-1:111122223333:task-definition/*"}
			return s
		}, "want only the family"},
		{"RunTask without cluster condition", func(s []policyStatement) []policyStatement {
			delete(find(s, "ecs:RunTask").conditions, "ecs:cluster")
			return s
		}, "RunTask needs the ecs:cluster"},
		{"ListTasks on * without condition", func(s []policyStatement) []policyStatement {
			delete(find(s, "ecs:ListTasks").conditions, "ecs:cluster")
			return s
		}, "needs the ecs:cluster condition"},
		{"PassRole on every role", func(s []policyStatement) []policyStatement {
			find(s, "iam:PassRole").resources = []string{"*"}
			return s
		}, "PassRole on"},
		{"PassRole to any service", func(s []policyStatement) []policyStatement {
			delete(find(s, "iam:PassRole").conditions, "iam:PassedToService")
			return s
		}, "iam:PassedToService"},
		{"TagResource on anything", func(s []policyStatement) []policyStatement {
			delete(find(s, "ecs:TagResource").conditions, "ecs:CreateAction")
			return s
		}, "only on create"},
		{"secret wildcard", func(s []policyStatement) []policyStatement {
			find(s, "secretsmanager:GetSecretValue").resources = []string{"*"}
			return s
		}, "GetSecretValue on"},
	}
	for _, mu := range mutations {
		probs := checkScalerPolicy(mu.mutate(clone()), need, "azp-agent-small")
		if !strings.Contains(strings.Join(probs, "\n"), mu.want) {
			t.Errorf("%s: not caught (want %q), problems: %v", mu.name, mu.want, probs)
		}
	}

	// The derivation from code: a file building ecs inputs yields its operations.
	src := `package scale
import (
	"context"
	awsecs "github.com/aws/aws-sdk-go-v2/service/ecs"
)
func f(c *awsecs.Client) {
	c.RunTask(context.TODO(), &awsecs.RunTaskInput{})
	c.DeleteCluster(context.TODO(), &awsecs.DeleteClusterInput{})
}`
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := ecsOperationsIn(f); !slices.Equal(got, []string{"RunTask", "DeleteCluster"}) {
		t.Errorf("ecsOperationsIn = %v, want [RunTask DeleteCluster]", got)
	}
}

package deploytest

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// contractMetrics are the EMF metrics of CONTRACT.md ("Metrics"), namespace
// AzpEntrypoint, with their dimension sets.
var contractMetrics = map[string][]string{
	"TimeToOnline":      {"Pool"},
	"JobsRun":           {"Pool"},
	"StopOutcome":       {"Pool", "Outcome"},
	"PendingJobs":       {"Pool", "Scaler"},
	"OldestPendingAge":  {"Pool", "Scaler"},
	"StartingTasks":     {"Pool", "Scaler"},
	"IdleAgents":        {"Pool", "Scaler"},
	"BusyAgents":        {"Pool", "Scaler"},
	"TasksLaunched":     {"Pool", "Scaler"},
	"FailedLaunches":    {"Pool", "Scaler"},
	"AgentsPruned":      {"Pool", "Scaler"},
	"TasksStopped":      {"Pool", "Scaler"},
	"ThrottledRequests": {"Pool", "Scaler"},
}

var contractOutcomes = []string{"drained", "cancelled", "killed", "deregistration_failed"}

// metricRef is one metric a widget or alarm refers to.
type metricRef struct {
	where     string
	namespace string
	name      string
	dims      map[string]string // dimension -> value ("" when matched by a search)
}

var (
	searchRe  = regexp.MustCompile(`SEARCH\('\{([^}]*)\}\s+MetricName="([^"]+)"((?:\s+\w+="[^"]*")*)',`)
	searchDim = regexp.MustCompile(`(\w+)="([^"]*)"`)
	insightRe = regexp.MustCompile(`^SELECT [A-Z]+\((\w+)\) FROM SCHEMA\("([^"]+)"((?:,\s*\w+)*)\)(?: WHERE (.*))?$`)
)

// refsFromSearch reads a dashboard SEARCH expression.
func refsFromSearch(where, expr string) (metricRef, bool) {
	m := searchRe.FindStringSubmatch(expr)
	if m == nil {
		return metricRef{}, false
	}
	parts := strings.Split(m[1], ",")
	r := metricRef{where: where, namespace: strings.TrimSpace(parts[0]), name: m[2], dims: map[string]string{}}
	for _, d := range parts[1:] {
		r.dims[strings.TrimSpace(d)] = ""
	}
	for _, kv := range searchDim.FindAllStringSubmatch(m[3], -1) {
		r.dims[kv[1]] = kv[2]
	}
	return r, true
}

// dashboardRefs collects every metric of a dashboard body.
func dashboardRefs(t *testing.T, body string) []metricRef {
	t.Helper()
	var d struct {
		Widgets []struct {
			Type       string `json:"type"`
			Properties struct {
				Title   string  `json:"title"`
				Metrics [][]any `json:"metrics"`
			} `json:"properties"`
		} `json:"widgets"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("dashboard_body: %v", err)
	}
	var out []metricRef
	for _, w := range d.Widgets {
		var prev []string
		for _, line := range w.Properties.Metrics {
			where := "widget " + w.Properties.Title
			var strs []string
			for _, e := range line {
				switch x := e.(type) {
				case string:
					strs = append(strs, x)
				case map[string]any:
					if expr, ok := x["expression"].(string); ok {
						r, ok := refsFromSearch(where, expr)
						if !ok {
							t.Errorf("%s: expression %q is not a SEARCH this test can read", where, expr)
							continue
						}
						out = append(out, r)
					}
				}
			}
			if len(strs) == 0 {
				continue
			}
			if strs[0] == "..." {
				strs = append(slices.Clone(prev), strs[1:]...)
			}
			prev = strs
			if len(strs) < 2 || len(strs)%2 != 0 {
				t.Errorf("%s: metric line %v is not [namespace, name, dim, value...]", where, strs)
				continue
			}
			r := metricRef{where: where, namespace: strs[0], name: strs[1], dims: map[string]string{}}
			for i := 2; i+1 < len(strs); i += 2 {
				r.dims[strs[i]] = strs[i+1]
			}
			out = append(out, r)
		}
	}
	return out
}

// alarmRefs collects the metric of every alarm instance.
func alarmRefs(t *testing.T, c *tfConfig) (map[string]metricRef, map[string]*evBody) {
	t.Helper()
	refs := map[string]metricRef{}
	bodies := map[string]*evBody{}
	for _, addr := range sortedKeys(c.m.blocks) {
		if c.m.blocks[addr].typ != "aws_cloudwatch_metric_alarm" {
			continue
		}
		for _, a := range c.instances(t, addr) {
			where := addr
			bodies[addr] = a
			if name := a.str("metric_name"); name != "" {
				r := metricRef{where: where, namespace: a.str("namespace"), name: name, dims: map[string]string{}}
				if d := a.attrs["dimensions"]; !d.IsNull() {
					for it := d.ElementIterator(); it.Next(); {
						k, v := it.Element()
						r.dims[k.AsString()] = v.AsString()
					}
				}
				refs[addr] = r
				continue
			}
			qs := a.all("metric_query")
			if len(qs) != 1 {
				t.Errorf("%s: neither metric_name nor one metric_query", where)
				continue
			}
			m := insightRe.FindStringSubmatch(qs[0].str("expression"))
			if m == nil {
				t.Errorf("%s: metric_query %q is not a Metrics Insights query this test can read", where, qs[0].str("expression"))
				continue
			}
			r := metricRef{where: where, namespace: m[2], name: m[1], dims: map[string]string{}}
			for _, d := range strings.Split(m[3], ",") {
				if d = strings.TrimSpace(d); d != "" {
					r.dims[d] = ""
				}
			}
			for _, cond := range regexp.MustCompile(`(\w+) = '([^']*)'`).FindAllStringSubmatch(m[4], -1) {
				r.dims[cond[1]] = cond[2]
			}
			refs[addr] = r
		}
	}
	return refs, bodies
}

// refProblems holds one reference to the contract: namespace, name, dimension set.
func refProblems(r metricRef, pool string) []string {
	var probs []string
	if r.namespace != "AzpEntrypoint" {
		probs = append(probs, fmt.Sprintf("%s: namespace %q, want AzpEntrypoint", r.where, r.namespace))
	}
	dims, ok := contractMetrics[r.name]
	if !ok {
		return append(probs, fmt.Sprintf("%s: metric %q is not in the contract's list", r.where, r.name))
	}
	if got := sortedKeys(r.dims); !slices.Equal(got, slices.Sorted(slices.Values(dims))) {
		probs = append(probs, fmt.Sprintf("%s: %s with dimensions %v, the contract's are %v (CloudWatch matches the whole set)", r.where, r.name, got, dims))
	}
	if r.dims["Pool"] != pool {
		probs = append(probs, fmt.Sprintf("%s: %s for Pool %q, want %q", r.where, r.name, r.dims["Pool"], pool))
	}
	if o, ok := r.dims["Outcome"]; ok && !slices.Contains(contractOutcomes, o) {
		probs = append(probs, fmt.Sprintf("%s: Outcome %q is not one of %v", r.where, o, contractOutcomes))
	}
	return probs
}

func checkRef(t *testing.T, r metricRef, pool string) {
	t.Helper()
	for _, p := range refProblems(r, pool) {
		t.Error(p)
	}
}

func TestDashboardAndAlarmsUseContractMetrics(t *testing.T) {
	m := loadModule(t, terraformDir(t))
	emitted := metricNamesInCode(t)
	topic := "arn:aws:sns:eu-west-1:111122223333:alerts"
	for _, tc := range []struct {
		name       string
		vars       map[string]any
		wantAlarms []string
	}{
		{"fixed", baseVars(map[string]any{"azp_pool": "linux"}), []string{"StopOutcome"}},
		{"scaler", scalerVars(map[string]any{"azp_pool": "linux", "alarm_topic_arn": topic, "pending_job_slo_seconds": 900}), []string{"AgentsPruned", "FailedLaunches", "OldestPendingAge", "StopOutcome"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := m.plan(t, tc.vars)
			dash := c.only(t, "aws_cloudwatch_dashboard.agents")
			refs := dashboardRefs(t, dash.str("dashboard_body"))
			seen := map[string]bool{}
			for _, r := range refs {
				checkRef(t, r, "linux")
				seen[r.name] = true
			}
			for name, dims := range contractMetrics {
				isScaler := slices.Contains(dims, "Scaler")
				if isScaler && tc.name == "fixed" && seen[name] {
					t.Errorf("fixed mode dashboard shows the scaler metric %s", name)
				}
				if (!isScaler || tc.name == "scaler") && !seen[name] {
					t.Errorf("%s mode dashboard does not show %s", tc.name, name)
				}
			}

			alarms, bodies := alarmRefs(t, c)
			var names []string
			for addr, r := range alarms {
				checkRef(t, r, "linux")
				names = append(names, r.name)
				a := bodies[addr]
				wantActions := []string{}
				if tc.name == "scaler" {
					wantActions = []string{topic}
				}
				for _, k := range []string{"alarm_actions", "ok_actions"} {
					if got := a.strs(k); !slices.Equal(got, wantActions) && !(len(got) == 0 && len(wantActions) == 0) {
						t.Errorf("%s: %s = %v, want %v (alarm_topic_arn)", addr, k, got, wantActions)
					}
				}
				if a.str("treat_missing_data") != "notBreaching" {
					t.Errorf("%s: missing data (nothing emitted) is not a breach", addr)
				}
				if len(a.str("alarm_description")) < 80 {
					t.Errorf("%s: the description must say what happened and what to do", addr)
				}
			}
			slices.Sort(names)
			if !slices.Equal(names, tc.wantAlarms) {
				t.Errorf("alarms on %v, want %v", names, tc.wantAlarms)
			}
			if tc.name == "scaler" {
				a := bodies["aws_cloudwatch_metric_alarm.oldest_pending"]
				if !a.attrs["threshold"].Equals(cty.NumberIntVal(900)).True() {
					t.Errorf("oldest pending alarm threshold must be pending_job_slo_seconds")
				}
				if r := alarms["aws_cloudwatch_metric_alarm.deregistration_failed"]; r.dims["Outcome"] != "deregistration_failed" {
					t.Errorf("deregistration alarm on Outcome %q", r.dims["Outcome"])
				}
			}
			if emitted != nil {
				for _, r := range refs {
					if !emitted[r.name] {
						t.Errorf("%s: %s is not emitted by the code (no string literal in internal/)", r.where, r.name)
					}
				}
				for _, r := range alarms {
					if !emitted[r.name] {
						t.Errorf("%s: %s is not emitted by the code", r.where, r.name)
					}
				}
			}
		})
	}
	if emitted == nil {
		t.Log("internal/metrics is not merged yet: metric names checked against the contract's list only")
	}
}

// metricNamesInCode returns the contract metric names that appear as string
// literals in the non-test Go code of internal/ (the EMF writer and its callers),
// or nil while internal/metrics does not exist.
func metricNamesInCode(t *testing.T) map[string]bool {
	t.Helper()
	root := filepath.Join(repoRoot(t), "internal")
	if _, err := os.Stat(filepath.Join(root, "metrics")); err != nil {
		return nil
	}
	found := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "deploytest" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if bl, ok := n.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				if s, err := strconv.Unquote(bl.Value); err == nil {
					if _, ok := contractMetrics[s]; ok {
						found[s] = true
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestMetricsCheckCatchesStrangers shows the reference check refuses a name
// outside the contract, a wrong namespace and a partial dimension set.
func TestMetricsCheckCatchesStrangers(t *testing.T) {
	body := `{"widgets":[{"type":"metric","properties":{"title":"x","metrics":[
		["AzpEntrypoint","JobsRun","Pool","linux"],
		["AzpEntrypoint","JobsDone","Pool","linux"],
		["AzpEntrypiont","JobsRun","Pool","linux"],
		[{"id":"e0","expression":"SEARCH('{AzpEntrypoint,Pool} MetricName=\"PendingJobs\" Pool=\"linux\"', 'Sum', 60)"}]
	]}}]}`
	refs := dashboardRefs(t, body)
	if len(refs) != 4 {
		t.Fatalf("read %d references, want 4", len(refs))
	}
	for i, wantOK := range []bool{true, false, false, false} {
		probs := refProblems(refs[i], "linux")
		if (len(probs) == 0) != wantOK {
			t.Errorf("reference %d (%s %s %v): problems %v, want ok=%v", i, refs[i].namespace, refs[i].name, refs[i].dims, probs, wantOK)
		}
	}
}

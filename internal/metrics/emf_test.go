package metrics

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// parsed is one metric value as CloudWatch would extract it.
type parsed struct {
	Namespace string
	Dims      map[string]string
	Name      string
	Unit      string
	Value     float64
	Time      time.Time
}

// parseEMF applies the specification's rules to one line and returns the metrics it yields, or
// why CloudWatch would reject it.
func parseEMF(line []byte) ([]parsed, error) {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(line, &root); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	var meta struct {
		Timestamp         *int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  string     `json:"Namespace"`
			Dimensions [][]string `json:"Dimensions"`
			Metrics    []struct {
				Name string `json:"Name"`
				Unit string `json:"Unit"`
			} `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	}
	raw, ok := root["_aws"]
	if !ok {
		return nil, fmt.Errorf("no _aws member")
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, err
	}
	if meta.Timestamp == nil {
		return nil, fmt.Errorf("_aws.Timestamp missing")
	}
	if len(meta.CloudWatchMetrics) == 0 {
		return nil, fmt.Errorf("_aws.CloudWatchMetrics empty")
	}
	units := map[string]bool{"": true, "Seconds": true, "Microseconds": true, "Milliseconds": true, "Bytes": true, "Count": true, "Percent": true, "None": true}
	var out []parsed
	for _, d := range meta.CloudWatchMetrics {
		if n := len(d.Namespace); n < 1 || n > 255 {
			return nil, fmt.Errorf("namespace length %d", n)
		}
		if len(d.Metrics) == 0 || len(d.Metrics) > 100 {
			return nil, fmt.Errorf("%d metrics in a directive", len(d.Metrics))
		}
		for _, set := range d.Dimensions {
			if len(set) > 30 {
				return nil, fmt.Errorf("dimension set of %d", len(set))
			}
			dims := map[string]string{}
			for _, name := range set {
				var v string
				if err := json.Unmarshal(root[name], &v); err != nil {
					return nil, fmt.Errorf("dimension %s: the root member must be a string", name)
				}
				dims[name] = v
			}
			for _, m := range d.Metrics {
				if !units[m.Unit] {
					return nil, fmt.Errorf("unit %q", m.Unit)
				}
				var v float64
				if err := json.Unmarshal(root[m.Name], &v); err != nil {
					return nil, fmt.Errorf("metric %s: the root member must be a number", m.Name)
				}
				out = append(out, parsed{d.Namespace, dims, m.Name, m.Unit, v, time.UnixMilli(*meta.Timestamp)})
			}
		}
	}
	return out, nil
}

func TestRecordsFollowTheSpecification(t *testing.T) {
	var buf bytes.Buffer
	w := New(&buf)
	at := time.Date(2026, 12, 5, 12, 0, 0, 123e6, time.UTC)
	w.Now = func() time.Time { return at }
	dims := []Dimension{{"Pool", "Default"}, {"Scaler", "Default/azp-agent"}}
	if err := w.Put(dims, Metric{"PendingJobs", Count, 3}, Metric{"OldestPendingAge", Seconds, 12.5}); err != nil {
		t.Fatal(err)
	}
	if err := w.Put([]Dimension{{"Pool", "Default"}, {"Outcome", "drained"}}, Metric{"StopOutcome", Count, 1}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per record, got %q", buf.String())
	}
	got, err := parseEMF([]byte(lines[0]))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Namespace != "AzpEntrypoint" || got[0].Dims["Scaler"] != "Default/azp-agent" ||
		got[0].Name != "PendingJobs" || got[0].Value != 3 || got[1].Unit != "Seconds" || got[1].Value != 12.5 || !got[0].Time.Equal(at) {
		t.Fatalf("parsed %+v", got)
	}
	got, err = parseEMF([]byte(lines[1]))
	if err != nil || got[0].Dims["Outcome"] != "drained" || got[0].Name != "StopOutcome" {
		t.Fatalf("parsed %+v, %v", got, err)
	}
}

func TestRejectsWhatCloudWatchWouldDrop(t *testing.T) {
	w := New(&bytes.Buffer{})
	for name, err := range map[string]error{
		"no metric":        w.Put([]Dimension{{"Pool", "x"}}),
		"clash":            w.Put([]Dimension{{"Pool", "x"}}, Metric{"Pool", Count, 1}),
		"reserved":         w.Put(nil, Metric{"_aws", Count, 1}),
		"repeated":         w.Put(nil, Metric{"A", Count, 1}, Metric{"A", Count, 2}),
		"not finite":       w.Put(nil, Metric{"A", Count, math.Inf(1)}),
		"too many metrics": w.Put(nil, make101()...),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func make101() []Metric {
	var ms []Metric
	for i := range 101 {
		ms = append(ms, Metric{fmt.Sprintf("M%d", i), Count, 1})
	}
	return ms
}

func TestConcurrentRecordsStayWholeLines(t *testing.T) {
	var buf bytes.Buffer
	w := New(&buf)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Put([]Dimension{{"Pool", "P"}}, Metric{"JobsRun", Count, float64(i)})
		}()
	}
	wg.Wait()
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		if _, err := parseEMF(sc.Bytes()); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 20 {
		t.Fatalf("%d records", n)
	}
}

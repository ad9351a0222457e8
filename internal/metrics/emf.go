// Package metrics writes CloudWatch Embedded Metric Format (EMF) records: one JSON object per line
// whose "_aws" metadata tells CloudWatch Logs which members are metrics, so that a task's log
// stream (the awslogs driver) yields metrics without an agent or a PutMetricData call.
//
// Format: CloudWatch User Guide, "Specification: Embedded metric format"
// (CloudWatch_Embedded_Metric_Format_Specification.html): a root object with
// _aws.Timestamp (milliseconds since the epoch) and _aws.CloudWatchMetrics, an array of
// directives {Namespace, Dimensions: [[names...]], Metrics: [{Name, Unit}]}; every dimension
// and metric name refers to a member of the root object (dimension values strings, metric values
// numbers). The Writer never writes a record that breaks those rules.
package metrics

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// Namespace is the CloudWatch namespace of every azp-entrypoint metric (contract, "Metrics").
const Namespace = "AzpEntrypoint"

// Unit is a CloudWatch unit (MetricDatum.Unit).
type Unit string

// Units used by azp-entrypoint.
const (
	Count        Unit = "Count"
	Seconds      Unit = "Seconds"
	Milliseconds Unit = "Milliseconds"
	None         Unit = "None"
)

// Dimension is one dimension name and value.
type Dimension struct{ Name, Value string }

// Metric is one value.
type Metric struct {
	Name  string
	Unit  Unit
	Value float64
}

// Writer writes EMF records, one per line, safe for concurrent use.
type Writer struct {
	mu        sync.Mutex
	w         io.Writer
	namespace string
	// Now is the clock of the records' Timestamp; default time.Now.
	Now func() time.Time
}

// New returns a Writer to w in the AzpEntrypoint namespace; a nil w discards.
func New(w io.Writer) *Writer {
	if w == nil {
		w = io.Discard
	}
	return &Writer{w: w, namespace: Namespace, Now: time.Now}
}

// Limits from the specification: up to 30 dimensions per set, 100 metrics per directive.
const (
	maxDimensions = 30
	maxMetrics    = 100
)

// Put writes one record with the dimensions as one dimension set and the metrics. Names must be
// unique and must not clash; values must be finite.
func (w *Writer) Put(dims []Dimension, ms ...Metric) error {
	if w == nil {
		return nil
	}
	if len(ms) == 0 {
		return fmt.Errorf("metrics: a record needs at least one metric")
	}
	if len(dims) > maxDimensions || len(ms) > maxMetrics {
		return fmt.Errorf("metrics: at most %d dimensions and %d metrics per record", maxDimensions, maxMetrics)
	}
	root := map[string]any{}
	names := make([]string, 0, len(dims))
	for _, d := range dims {
		if d.Name == "" || d.Name == "_aws" || root[d.Name] != nil {
			return fmt.Errorf("metrics: dimension name %q empty, reserved or repeated", d.Name)
		}
		root[d.Name] = d.Value
		names = append(names, d.Name)
	}
	type def struct {
		Name string `json:"Name"`
		Unit Unit   `json:"Unit,omitempty"`
	}
	defs := make([]def, 0, len(ms))
	for _, m := range ms {
		if m.Name == "" || m.Name == "_aws" || root[m.Name] != nil {
			return fmt.Errorf("metrics: metric name %q empty, reserved or repeated", m.Name)
		}
		if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) {
			return fmt.Errorf("metrics: metric %s: value %v is not finite", m.Name, m.Value)
		}
		root[m.Name] = m.Value
		defs = append(defs, def{m.Name, m.Unit})
	}
	root["_aws"] = map[string]any{
		"Timestamp": w.Now().UnixMilli(),
		"CloudWatchMetrics": []any{map[string]any{
			"Namespace":  w.namespace,
			"Dimensions": [][]string{names},
			"Metrics":    defs,
		}},
	}
	buf, err := json.Marshal(root)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	buf = append(buf, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.w.Write(buf)
	return err
}

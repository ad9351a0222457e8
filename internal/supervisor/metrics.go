package supervisor

import "github.com/azp-entrypoint/azp-entrypoint/internal/metrics"

// The run's metrics (contract, "Metrics"): TimeToOnline once, when the server first confirms the
// listener online; JobsRun per job the listener completed; StopOutcome once, when a run whose
// listener started ends.

// StopOutcome's Outcome dimension.
const (
	outcomeDrained     = "drained"   // no job was cut short
	outcomeCancelled   = "cancelled" // the listener was asked to cancel a running job
	outcomeKilled      = "killed"    // the listener outlived its share of the budget
	outcomeDeregFailed = "deregistration_failed"
)

// metric writes one record with the Pool dimension.
func (sv *supervisor) metric(m metrics.Metric, dims ...metrics.Dimension) {
	dims = append([]metrics.Dimension{{Name: "Pool", Value: sv.s.Pool}}, dims...)
	if err := sv.o.Metrics.Put(dims, m); err != nil {
		sv.log.Debug("metric not written", "metric", m.Name, "err", err)
	}
}

// stopOutcome writes StopOutcome for a run whose listener started.
func (sv *supervisor) stopOutcome(reg *registration) {
	if sv.outcome == "" {
		return
	}
	outcome := sv.outcome
	if reg.failed {
		outcome = outcomeDeregFailed
	}
	sv.metric(metrics.Metric{Name: "StopOutcome", Unit: metrics.Count, Value: 1}, metrics.Dimension{Name: "Outcome", Value: outcome})
}

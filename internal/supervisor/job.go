package supervisor

import "log/slog"

// jobState is the listener's job as the watch loop knows it. Only the watch loop, and the stop
// sequence it hands over to, touch it.
type jobState struct {
	busy      bool
	name      string
	state     *stateWriter
	protector *protector // nil: no ECS task protection
	log       *slog.Logger
}

// set records a job start or end, and holds ECS scale-in protection while a job runs.
func (j *jobState) set(busy bool, name string) {
	if busy == j.busy {
		return
	}
	j.busy, j.name = busy, name
	if busy {
		j.log.Info("job started", "job", name)
		_ = j.state.set(func(s *State) { s.Phase, s.Job = PhaseBusy, name })
	} else {
		_ = j.state.set(func(s *State) {
			s.Job = ""
			if s.Phase == PhaseBusy {
				s.Phase = PhaseListening
			}
		})
	}
	if j.protector != nil {
		j.protector.want(busy)
	}
}

// renewProtection extends scale-in protection for jobs that outlast its expiry.
func (j *jobState) renewProtection() {
	if j.protector != nil && j.busy {
		j.protector.renew()
	}
}

package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Phase is where the lifecycle is, as `azp-entrypoint health` sees it.
type Phase string

const (
	PhaseStarting    Phase = "starting"
	PhaseConfiguring Phase = "configuring"
	PhaseStarted     Phase = "started"   // listener launched, not yet listening
	PhaseListening   Phase = "listening" // connected and waiting for jobs
	PhaseBusy        Phase = "busy"      // running a job
	// PhaseDisconnected: the listener reported connection errors for longer than the grace and
	// the server does not see the agent online.
	PhaseDisconnected Phase = "disconnected"
	PhaseBackoff      Phase = "backoff"  // waiting before a relaunch
	PhaseUpdating     Phase = "updating" // agent self-update in progress
	PhaseExited       Phase = "exited"   // the listener ended; what follows is being decided
	PhaseStopping     Phase = "stopping"
	PhaseStopped      Phase = "stopped"
)

// healthy phases answer 0 to the health check.
func (p Phase) healthy() bool { return p == PhaseListening || p == PhaseBusy }

// State is the file the health command reads. It holds no secret.
type State struct {
	PID   int       `json:"pid"`
	Phase Phase     `json:"phase"`
	Since time.Time `json:"since"`
	Agent string    `json:"agent,omitempty"`
	Pool  string    `json:"pool,omitempty"`
	Job   string    `json:"job,omitempty"`
}

const stateFile = "state.json"

// stateWriter publishes the phase atomically (write, then rename), so health never reads half a file.
type stateWriter struct {
	mu    sync.Mutex
	dir   string
	state State
}

func newStateWriter(dir string) (*stateWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("AZP_STATE_DIR %s: %w (set AZP_STATE_DIR to a writable directory)", dir, err)
	}
	w := &stateWriter{dir: dir, state: State{PID: os.Getpid()}}
	return w, w.set(func(s *State) { s.Phase = PhaseStarting })
}

func (w *stateWriter) set(f func(*State)) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := w.state.Phase
	f(&w.state)
	// From the first stop request on, health stays 1: a job finishing during the drain must not
	// make the agent look ready again.
	if (prev == PhaseStopping && w.state.Phase != PhaseStopped) || prev == PhaseStopped {
		w.state.Phase = prev
	}
	if w.state.Phase != prev || w.state.Since.IsZero() {
		w.state.Since = time.Now().UTC()
	}
	data, _ := json.Marshal(w.state)
	tmp, err := os.CreateTemp(w.dir, ".state-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(w.dir, stateFile))
}

func (w *stateWriter) phase(p Phase) { _ = w.set(func(s *State) { s.Phase = p }) }

// Health answers the health check from the state directory: nil while the entrypoint that wrote
// the state is alive and its listener is connected or runs a job.
func Health(dir string) (State, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return State{}, fmt.Errorf("no state in %s (the entrypoint has not started, or AZP_STATE_DIR differs): %w", dir, err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("state file %s: %w", filepath.Join(dir, stateFile), err)
	}
	if s.PID <= 0 || unix.Kill(s.PID, 0) == unix.ESRCH {
		return s, fmt.Errorf("the entrypoint (pid %d) is not running", s.PID)
	}
	if !s.Phase.healthy() {
		return s, fmt.Errorf("agent %s is %s since %s", s.Agent, s.Phase, s.Since.Format(time.RFC3339))
	}
	return s, nil
}

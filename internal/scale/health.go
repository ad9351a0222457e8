package scale

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// healthFile is the scaler's state for `health`: the time its loop last ran a pass.
const healthFile = "scale.json"

// HealthWindow is how recently the loop must have run for `health` to answer 0 (contract).
const HealthWindow = 3 * time.Minute

func writeHealth(dir string, now time.Time) {
	if dir == "" {
		return
	}
	os.MkdirAll(dir, 0o755)
	buf, _ := json.Marshal(map[string]any{"lastPass": now.UTC()})
	tmp := filepath.Join(dir, healthFile+".tmp")
	if os.WriteFile(tmp, buf, 0o644) == nil {
		os.Rename(tmp, filepath.Join(dir, healthFile))
	}
}

// ErrNoScaler means the state directory holds no scaler state (the container runs an agent).
var ErrNoScaler = errors.New("no scaler state")

// Health reports whether the scaler's loop ran within HealthWindow; ErrNoScaler when the state
// directory holds no scaler state. Launching paused by the breaker is not unhealthy.
func Health(dir string, now time.Time) (time.Time, error) {
	buf, err := os.ReadFile(filepath.Join(dir, healthFile))
	if errors.Is(err, os.ErrNotExist) {
		return time.Time{}, ErrNoScaler
	}
	if err != nil {
		return time.Time{}, err
	}
	var st struct {
		LastPass time.Time `json:"lastPass"`
	}
	if err := json.Unmarshal(buf, &st); err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", filepath.Join(dir, healthFile), err)
	}
	if age := now.Sub(st.LastPass); age > HealthWindow {
		return st.LastPass, fmt.Errorf("the scaler's loop last ran %s ago (more than %s)", age.Round(time.Second), HealthWindow)
	}
	return st.LastPass, nil
}

package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// JobSpec describes a job request queued with QueueJob.
type JobSpec struct {
	Pool         string        `json:"pool,omitempty"`   // default: the first pool
	Agent        string        `json:"agent,omitempty"`  // only this agent may take it
	Name         string        `json:"name,omitempty"`   // jobDisplayName; default "Job"
	Duration     time.Duration `json:"-"`                // how long the fake job runs
	Result       string        `json:"result,omitempty"` // "succeeded" (default) or "failed"
	Orphans      int           `json:"orphans,omitempty"`
	IgnoreCancel time.Duration `json:"-"` // how long the fake step ignores a cancel; 0: for good (see fakeagent.JobSpec)
	// SigintTimeoutMs/SigtermTimeoutMs shorten the fake worker's PROCESS_SIGINT_TIMEOUT (7500) and
	// PROCESS_SIGTERM_TIMEOUT (2500) for this job; < 0 means 0. Test knob: only for tests that
	// explicitly want a cancel shorter than the real agent's.
	SigintTimeoutMs  int64 `json:"sigintTimeoutMs,omitempty"`
	SigtermTimeoutMs int64 `json:"sigtermTimeoutMs,omitempty"`
	// FailFirstRenew: the listener's first renewal of the request fails, so it prints "Running
	// job" and never starts a worker or prints "completed" (JobDispatcher.RunJobAsync).
	FailFirstRenew bool     `json:"failFirstRenew,omitempty"`
	Demands        []string `json:"demands,omitempty"` // "name" or "name -equals value" (scaling.go)
}

// AgentView is the simulator's view of an agent.
type AgentView struct {
	ID                int       `json:"id"`
	Pool              string    `json:"pool"`
	Name              string    `json:"name"`
	Status            string    `json:"status"` // "online" or "offline"
	Enabled           bool      `json:"enabled"`
	StatusChangedOn   time.Time `json:"statusChangedOn"`
	AssignedRequestID int64     `json:"assignedRequestId,omitempty"`
	Version           string    `json:"version,omitempty"`
	CreatedOn         time.Time `json:"createdOn"`
	HasSession        bool      `json:"hasSession"`
}

// RequestView is the simulator's view of a job request. Zero times are "not yet".
type RequestView struct {
	ID          int64     `json:"id"`
	Pool        string    `json:"pool"`
	AgentName   string    `json:"agentName,omitempty"`
	Name        string    `json:"name"`
	JobID       string    `json:"jobId"`
	QueueTime   time.Time `json:"queueTime"`
	AssignTime  time.Time `json:"assignTime"`
	ReceiveTime time.Time `json:"receiveTime"`
	FinishTime  time.Time `json:"finishTime"`
	Result      string    `json:"result,omitempty"` // succeeded, failed, canceled, abandoned
}

// FaultSpec makes matching wire requests fail. Control routes (/_sim/ except download and
// oauth2) are never faulted.
type FaultSpec struct {
	Method     string        `json:"method,omitempty"`     // "" matches any method
	PathRegexp string        `json:"pathRegexp,omitempty"` // against the URL path (no query); "" matches any
	Status     int           `json:"status,omitempty"`     // 0: no status override (Delay only)
	Count      int           `json:"count,omitempty"`      // times to apply; 0 = until ClearFaults
	Delay      time.Duration `json:"-"`                    // wait before answering (or before passing on)
	RetryAfter time.Duration `json:"-"`                    // Retry-After header in whole seconds, rounded up
	Drop       bool          `json:"drop,omitempty"`       // close the connection without an answer
	// TruncateAfter > 0 passes the request on but cuts the connection after that many body
	// bytes of the answer (e.g. a package download that breaks off midway).
	TruncateAfter int64  `json:"truncateAfter,omitempty"`
	Body          string `json:"body,omitempty"` // default: the service's JSON error for Status
}

// RateLimitSpec limits matching wire requests to N per fixed Window; the excess gets 429 with
// Retry-After (the seconds left in the window, rounded up).
type RateLimitSpec struct {
	Method     string        `json:"method,omitempty"`
	PathRegexp string        `json:"pathRegexp,omitempty"`
	N          int           `json:"n"`
	Window     time.Duration `json:"-"`
}

// PackageSpec registers an agent package for the package listing and download.
type PackageSpec struct {
	Version     string    `json:"version"`               // "4.261.0"
	Platform    string    `json:"platform"`              // "linux-x64", "linux-musl-arm64", ...
	FilePath    string    `json:"filePath,omitempty"`    // served at /_sim/download/<Filename>
	SHA256      string    `json:"sha256,omitempty"`      // hashValue the listing claims; default: the file's real hash
	Filename    string    `json:"filename,omitempty"`    // default: base name of FilePath
	Type        string    `json:"type,omitempty"`        // default "agent"
	DownloadURL string    `json:"downloadUrl,omitempty"` // default: <server>/_sim/download/<Filename>
	CreatedOn   time.Time `json:"createdOn,omitzero"`
}

// LoggedRequest is one wire request as the simulator saw it.
type LoggedRequest struct {
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Query  string    `json:"query,omitempty"`
	Time   time.Time `json:"time"`
	Status int       `json:"status"` // 0 while in flight or when dropped
	Auth   string    `json:"auth"`   // "basic", "bearer" or "none"
	Fault  bool      `json:"fault,omitempty"`
}

// SeedSpec is the HTTP form of SeedAgents.
type SeedSpec struct {
	Pool            string    `json:"pool"`
	N               int       `json:"n"`
	Status          string    `json:"status"`
	StatusChangedOn time.Time `json:"statusChangedOn"`
	NamePrefix      string    `json:"namePrefix"`
}

// Durations travel as Go duration strings ("1.5s"); a JSON number is taken as milliseconds.

type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*d = 0
			return nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = jsonDuration(v)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	ms, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("duration %s: want a string like \"1.5s\" or milliseconds", b)
	}
	*d = jsonDuration(time.Duration(ms * float64(time.Millisecond)))
	return nil
}

type jobSpecAlias JobSpec

type jobSpecJSON struct {
	jobSpecAlias
	Duration     jsonDuration `json:"duration,omitempty"`
	IgnoreCancel jsonDuration `json:"ignoreCancel,omitempty"`
}

// MarshalJSON writes durations as strings.
func (j JobSpec) MarshalJSON() ([]byte, error) {
	return json.Marshal(jobSpecJSON{jobSpecAlias(j), jsonDuration(j.Duration), jsonDuration(j.IgnoreCancel)})
}

// UnmarshalJSON reads durations as strings or milliseconds.
func (j *JobSpec) UnmarshalJSON(b []byte) error {
	var v jobSpecJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*j = JobSpec(v.jobSpecAlias)
	j.Duration, j.IgnoreCancel = time.Duration(v.Duration), time.Duration(v.IgnoreCancel)
	return nil
}

type faultSpecAlias FaultSpec

type faultSpecJSON struct {
	faultSpecAlias
	Delay      jsonDuration `json:"delay,omitempty"`
	RetryAfter jsonDuration `json:"retryAfter,omitempty"`
}

// MarshalJSON writes durations as strings.
func (f FaultSpec) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultSpecJSON{faultSpecAlias(f), jsonDuration(f.Delay), jsonDuration(f.RetryAfter)})
}

// UnmarshalJSON reads durations as strings or milliseconds.
func (f *FaultSpec) UnmarshalJSON(b []byte) error {
	var v faultSpecJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = FaultSpec(v.faultSpecAlias)
	f.Delay, f.RetryAfter = time.Duration(v.Delay), time.Duration(v.RetryAfter)
	return nil
}

type rateLimitAlias RateLimitSpec

type rateLimitJSON struct {
	rateLimitAlias
	Window jsonDuration `json:"window"`
}

// MarshalJSON writes the window as a string.
func (r RateLimitSpec) MarshalJSON() ([]byte, error) {
	return json.Marshal(rateLimitJSON{rateLimitAlias(r), jsonDuration(r.Window)})
}

// UnmarshalJSON reads the window as a string or milliseconds.
func (r *RateLimitSpec) UnmarshalJSON(b []byte) error {
	var v rateLimitJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = RateLimitSpec(v.rateLimitAlias)
	r.Window = time.Duration(v.Window)
	return nil
}

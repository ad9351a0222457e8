package ecs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Limits of ExpiresInMinutes documented for the task protection endpoint.
const (
	MinProtectionMinutes     = 1
	MaxProtectionMinutes     = 2880
	DefaultProtectionMinutes = 120 // what ECS applies when ExpiresInMinutes is omitted
)

// ErrTaskNotValid matches (errors.Is) the TASK_NOT_VALID failure: the task does not belong to
// an ECS service (a standalone RunTask task, e.g. job mode), so it cannot be protected and
// needs no protection. Log once and stop trying.
var ErrTaskNotValid = errors.New("task is not part of an ECS service (TASK_NOT_VALID)")

// Protection sets and reads ECS task scale-in protection through the ECS agent endpoint
// $ECS_AGENT_URI/task-protection/v1/state.
type Protection struct {
	uri  string
	http *http.Client
	// Attempts and Backoff bound the retries of transient failures (transport errors, 5xx, 429,
	// and the endpoint's ThrottlingException/RequestCanceled/RequestTimeout/RequestError/
	// ServerException).
	Attempts int
	Backoff  time.Duration
}

// ProtectionFromEnv returns a Protection when ECS_AGENT_URI is set.
func ProtectionFromEnv(getenv func(string) string) (*Protection, bool) {
	uri := strings.TrimSpace(getenv(EnvAgentURI))
	if uri == "" {
		return nil, false
	}
	return NewProtection(uri, nil), true
}

// NewProtection returns a client for agentURI (the value of ECS_AGENT_URI). The ECS agent calls
// the ECS API on our behalf, so answers can take a few seconds; a nil httpClient gets a 10 s
// timeout.
func NewProtection(agentURI string, httpClient *http.Client) *Protection {
	if httpClient == nil {
		httpClient = directClient(10 * time.Second)
	}
	return &Protection{
		uri:      strings.TrimRight(agentURI, "/") + "/task-protection/v1/state",
		http:     httpClient,
		Attempts: 3,
		Backoff:  250 * time.Millisecond,
	}
}

// ProtectionState is the task's protection as the endpoint reports it.
type ProtectionState struct {
	Enabled        bool
	ExpirationDate time.Time // zero when not protected
	TaskARN        string
}

// ProtectionError is a failure or error answer of the endpoint, or an unexpected HTTP status.
type ProtectionError struct {
	Op        string // "set" or "get"
	Status    int    // HTTP status
	Arn       string
	Reason    string // failure answers, e.g. TASK_NOT_VALID
	Detail    string
	Code      string // error answers, e.g. AccessDeniedException
	Message   string
	RequestID string
}

func (e *ProtectionError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ECS task protection %s", e.Op)
	switch {
	case e.Reason == "TASK_NOT_VALID":
		b.WriteString(": TASK_NOT_VALID: the task is not part of an ECS service (standalone tasks cannot be protected)")
	case e.Reason != "":
		fmt.Fprintf(&b, ": failure %s", e.Reason)
		if e.Detail != "" {
			fmt.Fprintf(&b, ": %s", e.Detail)
		}
	case e.Code != "":
		fmt.Fprintf(&b, ": %s: %s", e.Code, e.Message)
		if e.Code == "AccessDeniedException" {
			b.WriteString(" (allow ecs:UpdateTaskProtection and ecs:GetTaskProtection in the task role, or set AZP_ECS_TASK_PROTECTION=false)")
		}
	default:
		fmt.Fprintf(&b, ": HTTP %d: %s", e.Status, e.Message)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrTaskNotValid) work.
func (e *ProtectionError) Is(target error) bool {
	return target == ErrTaskNotValid && e.Reason == "TASK_NOT_VALID"
}

func (e *ProtectionError) transient() bool {
	switch e.Code {
	case "ThrottlingException", "RequestCanceled", "RequestTimeout", "RequestError",
		"ServerException", "InternalFailure", "ServiceUnavailable":
		return true
	}
	return e.Reason == "" && e.Code == "" && transientStatus(e.Status)
}

// Set turns protection on (for expiresInMinutes, clamped to 1..2880; 0 or less means the ECS
// default of 120) or off. Calling it again while on extends the expiry from now.
func (p *Protection) Set(ctx context.Context, enabled bool, expiresInMinutes int) error {
	body := map[string]any{"ProtectionEnabled": enabled}
	if enabled && expiresInMinutes > 0 {
		body["ExpiresInMinutes"] = min(max(expiresInMinutes, MinProtectionMinutes), MaxProtectionMinutes)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = p.do(ctx, "set", http.MethodPut, data)
	return err
}

// State reads the current protection.
func (p *Protection) State(ctx context.Context) (ProtectionState, error) {
	return p.do(ctx, "get", http.MethodGet, nil)
}

// protectionResponse is the endpoint's answer: exactly one of the three is set.
type protectionResponse struct {
	RequestID  string `json:"requestID"`
	Protection *struct {
		ExpirationDate    *string `json:"ExpirationDate"`
		ProtectionEnabled bool    `json:"ProtectionEnabled"`
		TaskArn           string  `json:"TaskArn"`
	} `json:"protection"`
	Failure *struct {
		Arn    string  `json:"Arn"`
		Detail *string `json:"Detail"`
		Reason string  `json:"Reason"`
	} `json:"failure"`
	Error *struct {
		Arn     string `json:"Arn"`
		Code    string `json:"Code"`
		Message string `json:"Message"`
	} `json:"error"`
}

func (p *Protection) do(ctx context.Context, op, method string, body []byte) (ProtectionState, error) {
	var state ProtectionState
	err := retry(ctx, p.Attempts, p.Backoff, func() (bool, error) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, p.uri, rd)
		if err != nil {
			return false, fmt.Errorf("ECS task protection %s: bad %s: %w", op, EnvAgentURI, err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := p.http.Do(req)
		if err != nil {
			return true, fmt.Errorf("ECS task protection %s: %w", op, err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return true, fmt.Errorf("ECS task protection %s: %w", op, err)
		}
		var r protectionResponse
		jerr := json.Unmarshal(raw, &r)
		switch {
		case jerr == nil && r.Failure != nil:
			e := &ProtectionError{Op: op, Status: resp.StatusCode, Arn: r.Failure.Arn, Reason: r.Failure.Reason, RequestID: r.RequestID}
			if r.Failure.Detail != nil {
				e.Detail = *r.Failure.Detail
			}
			return e.transient(), e
		case jerr == nil && r.Error != nil:
			e := &ProtectionError{Op: op, Status: resp.StatusCode, Arn: r.Error.Arn, Code: r.Error.Code, Message: r.Error.Message, RequestID: r.RequestID}
			return e.transient(), e
		case resp.StatusCode != http.StatusOK:
			e := &ProtectionError{Op: op, Status: resp.StatusCode, Message: snippet(raw)}
			return e.transient(), e
		case jerr != nil || r.Protection == nil:
			return false, fmt.Errorf("ECS task protection %s: unexpected answer: %s", op, snippet(raw))
		}
		state = ProtectionState{Enabled: r.Protection.ProtectionEnabled, TaskARN: r.Protection.TaskArn}
		if d := r.Protection.ExpirationDate; d != nil && *d != "" {
			if t, err := time.Parse(time.RFC3339Nano, *d); err == nil {
				state.ExpirationDate = t
			}
		}
		return false, nil
	})
	return state, err
}

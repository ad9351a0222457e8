package scale

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateObserver is an http.RoundTripper that watches the answers of Azure DevOps and ECS for rate
// limiting: 429s and ECS ThrottlingException (counted for the ThrottledRequests metric), and Azure
// DevOps's X-RateLimit-* headers, from which it advises a slower poll. Azure DevOps first delays
// requests and sends X-RateLimit-Delay, then answers 429 with Retry-After (TF400733); the
// azdo client's transport honours Retry-After itself ("Rate limits", learn.microsoft.com
// azure/devops/integrate/concepts/rate-limits).
type RateObserver struct {
	Next http.RoundTripper

	mu        sync.Mutex
	throttled int
	advice    time.Duration
	until     time.Time
}

// Wrap returns a RoundTripper that observes rt (nil: http.DefaultTransport).
func (o *RateObserver) Wrap(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &observed{o: o, next: rt}
}

type observed struct {
	o    *RateObserver
	next http.RoundTripper
}

func (t *observed) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	t.o.observe(resp)
	return resp, nil
}

// Doer is an HTTP client as the AWS SDK takes it (aws.HTTPClient).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// WrapDoer returns a client that observes d's answers (for the AWS SDK, whose own client must stay
// an *awshttp.BuildableClient for AWS_CA_BUNDLE to apply).
func (o *RateObserver) WrapDoer(d Doer) Doer { return doer{o, d} }

type doer struct {
	o    *RateObserver
	next Doer
}

func (d doer) Do(r *http.Request) (*http.Response, error) {
	resp, err := d.next.Do(r)
	if err == nil {
		d.o.observe(resp)
	}
	return resp, err
}

func (o *RateObserver) observe(resp *http.Response) {
	throttled := resp.StatusCode == http.StatusTooManyRequests
	if resp.StatusCode == http.StatusBadRequest && strings.Contains(resp.Header.Get("Content-Type"), "amz-json") {
		// ECS (awsJson1.1) throttling: 400 with __type ThrottlingException.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		throttled = bytes.Contains(body, []byte("ThrottlingException")) || strings.Contains(resp.Header.Get("X-Amzn-ErrorType"), "Throttling")
	}
	var wait time.Duration
	if d, err := strconv.ParseFloat(resp.Header.Get("X-RateLimit-Delay"), 64); err == nil && d > 0 {
		// The service is already delaying us: back off the poll by ten times the delay.
		wait = time.Duration(d * 10 * float64(time.Second))
	}
	if rem, err := strconv.Atoi(resp.Header.Get("X-RateLimit-Remaining")); err == nil && rem <= 10 {
		if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			// Almost out of TSTUs: wait for the window to reset (epoch seconds).
			wait = max(wait, time.Until(time.Unix(reset, 0)))
		}
	}
	if ra := resp.Header.Get("Retry-After"); throttled && ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil {
			wait = max(wait, time.Duration(secs)*time.Second)
		}
	}
	o.mu.Lock()
	if throttled {
		o.throttled++
	}
	if wait > 0 {
		wait = min(wait, 5*time.Minute)
		if until := time.Now().Add(wait); until.After(o.until) {
			o.until = until
		}
	}
	o.mu.Unlock()
}

// Advice is how long the next poll should wait at least.
func (o *RateObserver) Advice() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return max(time.Until(o.until), 0)
}

// TakeThrottled returns the throttled answers seen since the last call.
func (o *RateObserver) TakeThrottled() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.throttled
	o.throttled = 0
	return n
}

// Throttled is the count without resetting it.
func (o *RateObserver) Throttled() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.throttled
}

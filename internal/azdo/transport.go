package azdo

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/net/http/httpproxy"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/redact"
)

// HTTPClient returns the HTTP client every outbound request of the entrypoint shares (server REST
// calls, package downloads, Entra and Secrets Manager): it trusts the system roots plus
// AZP_CA_CERT_FILE and uses HTTPS_PROXY/HTTP_PROXY/NO_PROXY from the settings. It has no overall
// timeout, because downloads can be long; callers bound requests with their context.
func HTTPClient(s *config.Settings) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	proxy := httpproxy.FromEnvironment()
	if s != nil {
		proxy = &httpproxy.Config{HTTPSProxy: s.HTTPSProxy, HTTPProxy: s.HTTPProxy, NoProxy: s.NoProxy}
	}
	pf := proxy.ProxyFunc()
	tr.Proxy = func(r *http.Request) (*url.URL, error) { return pf(r.URL) }
	if s != nil && s.CACertFile != "" {
		pem, err := os.ReadFile(s.CACertFile)
		if err != nil {
			return nil, exit.Config(fmt.Errorf("AZP_CA_CERT_FILE = %q: %w (mount the PEM bundle there or unset the setting)", s.CACertFile, err))
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, exit.Config(fmt.Errorf("AZP_CA_CERT_FILE = %q: no PEM certificate found in the file", s.CACertFile))
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}

// Error is an answer of the server that is not a success, after retries.
type Error struct {
	Status  int
	Method  string
	URL     string // without query
	TypeKey string // e.g. AccessDeniedException
	Message string // the server's message
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	s := fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.URL, e.Status, msg)
	if e.TypeKey != "" {
		s += " (" + e.TypeKey + ")"
	}
	return s
}

// credentialError carries a failure of Options.Auth through the SDK unchanged.
type credentialError struct{ err error }

func (e *credentialError) Error() string { return e.err.Error() }
func (e *credentialError) Unwrap() error { return e.err }

type retryState struct {
	start        time.Time
	serverErrors int
	method, url  string
	warned       bool
}

type stateKey struct{}

// transport sets the Authorization header, retries through go-retryablehttp, turns a final
// non-2xx answer into *Error and buffers bodies (the SDK leaves some response bodies unclosed,
// which would otherwise pin a connection each; a prune of thousands of agents would exhaust them).
type transport struct {
	auth   func(context.Context) (string, error)
	retry  *retryablehttp.RoundTripper
	logger *slog.Logger
}

const maxBody = 64 << 20

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	r := req.Clone(ctx)
	if t.auth != nil {
		h, err := t.auth(ctx)
		if err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, &credentialError{err}
		}
		if h != "" {
			r.Header.Set("Authorization", h)
		}
	}
	st := &retryState{start: time.Now(), method: r.Method, url: redact.URL(r.URL.String())}
	r = r.WithContext(context.WithValue(ctx, stateKey{}, st))
	resp, err := t.retry.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if resp.StatusCode == http.StatusNonAuthoritativeInfo && strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		// Azure DevOps answers a bad credential with 203 and a sign-in page when redirects are not
		// suppressed; treat it as what it is.
		resp.StatusCode = http.StatusUnauthorized
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode, Method: r.Method, URL: redact.URL(r.URL.String())}
		var sv struct {
			Message string `json:"message"`
			TypeKey string `json:"typeKey"`
		}
		if json.Unmarshal(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")), &sv) == nil {
			e.Message, e.TypeKey = sv.Message, sv.TypeKey
		}
		return nil, e
	}
	if rerr != nil {
		return nil, rerr
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// rateGate makes a server's Retry-After hold for the whole client, not only for the request that
// was told to wait: the service rate-limits per identity, so a prune's other workers must pause too.
type rateGate struct {
	next  http.RoundTripper
	mu    sync.Mutex
	until time.Time
}

func (g *rateGate) RoundTrip(req *http.Request) (*http.Response, error) {
	g.mu.Lock()
	wait := time.Until(g.until)
	g.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		}
	}
	resp, err := g.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d := retryablehttp.DefaultBackoff(0, 0, 0, resp); d > 0 && resp.Header.Get("Retry-After") != "" {
			until := time.Now().Add(min(d, maxRetryAfter))
			g.mu.Lock()
			if until.After(g.until) {
				g.until = until
			}
			g.mu.Unlock()
		}
	}
	return resp, err
}

func newRetryClient(base *http.Client, o Options, logger *slog.Logger) *retryablehttp.Client {
	inner := &http.Client{Transport: base.Transport, Timeout: o.RequestTimeout}
	if inner.Transport == nil {
		inner.Transport = http.DefaultTransport
	}
	inner.Transport = &rateGate{next: inner.Transport}
	rc := &retryablehttp.Client{
		HTTPClient:   inner,
		Logger:       slogLeveled{logger},
		RetryWaitMin: o.RetryWaitMin,
		RetryWaitMax: o.RetryWaitMax,
		RetryMax:     1 << 30, // checkRetry decides: by time for connections and 429, by count for 5xx
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	rc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		st, _ := ctx.Value(stateKey{}).(*retryState)
		if st == nil {
			st = &retryState{start: time.Now()}
		}
		if err != nil {
			if ok, _ := retryablehttp.DefaultRetryPolicy(ctx, nil, err); !ok || isTLSError(err) {
				return false, nil
			}
			if time.Since(st.start) >= o.UnreachableFor {
				return false, nil
			}
			if !st.warned {
				st.warned = true
				logger.Warn("the server did not answer; retrying", "request", st.method+" "+st.url, "error", err.Error(), "for_at_most", o.UnreachableFor.String())
			}
			return true, nil
		}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			logger.Debug("rate limited; retrying", "request", st.method+" "+st.url, "retry_after", resp.Header.Get("Retry-After"))
			return time.Since(st.start) < o.RateLimitFor, nil
		case resp.StatusCode == 0 || (resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented):
			st.serverErrors++
			if st.serverErrors > o.MaxRetries {
				return false, nil
			}
			logger.Warn("server error; retrying", "request", st.method+" "+st.url, "status", resp.StatusCode, "attempt", st.serverErrors)
			return true, nil
		}
		return false, nil
	}
	rc.Backoff = func(first, limit time.Duration, attempt int, resp *http.Response) time.Duration {
		if resp != nil && resp.Header.Get("Retry-After") != "" &&
			(resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			// DefaultBackoff returns the server's Retry-After (seconds or HTTP date) for 429 and 503.
			d := retryablehttp.DefaultBackoff(first, limit, attempt, resp)
			return min(d, maxRetryAfter)
		}
		d := first
		for i := 0; i < attempt && d < limit; i++ {
			d *= 2
		}
		d = min(d, limit)
		// Jitter spreads a herd of agents (or prune workers) that failed together.
		return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	}
	return rc
}

// maxRetryAfter bounds a server's Retry-After, so a broken header cannot park a request for hours.
const maxRetryAfter = 5 * time.Minute

func isTLSError(err error) bool {
	var (
		ua  x509.UnknownAuthorityError
		ci  x509.CertificateInvalidError
		he  x509.HostnameError
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		ae  tls.AlertError
	)
	return errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &he) || errors.As(err, &cve) ||
		errors.As(err, &rhe) || errors.As(err, &ae)
}

func isNetError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	var de *net.DNSError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.As(err, &de) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// slogLeveled sends go-retryablehttp's own chatter to debug level.
type slogLeveled struct{ l *slog.Logger }

func (s slogLeveled) Error(msg string, kv ...interface{}) { s.l.Debug("http: "+msg, kv...) }
func (s slogLeveled) Info(msg string, kv ...interface{})  { s.l.Debug("http: "+msg, kv...) }
func (s slogLeveled) Debug(msg string, kv ...interface{}) {}
func (s slogLeveled) Warn(msg string, kv ...interface{})  { s.l.Debug("http: "+msg, kv...) }

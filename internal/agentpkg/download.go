package agentpkg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/redact"
)

// HTTPStatusError is a download answered with a status that retrying will not change.
type HTTPStatusError struct {
	URL    string // as redact.URL shows it
	Status int
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("GET %s: %d %s", redact.URL(e.URL), e.Status, http.StatusText(e.Status))
}

// fetcher is an io.Reader over one URL that survives dropped connections: after a failure it asks
// again from where it stopped with "Range: bytes=N-" (and If-Range, so that a changed file is not
// spliced onto the old one) instead of starting over.
type fetcher struct {
	ctx       context.Context
	client    *http.Client
	url       string
	shown     string // url as logs and errors show it (redact.URL)
	authorize func(*http.Request)
	log       *slog.Logger
	retries   int           // failures in a row without progress before giving up
	delay     time.Duration // first backoff; doubles, at most 10 s
	stall     time.Duration // no byte for this long counts as a dropped connection

	offset    atomic.Int64
	size      atomic.Int64 // -1 while unknown; read by the progress reporter
	validator string
	body      io.ReadCloser
	cancel    context.CancelFunc
	watchdog  *time.Timer
	failures  int
	progress  bool // bytes arrived since the last failure
	resumes   int
}

const maxResumes = 100 // a server that drops every few kilobytes is not a server to wait for

func newFetcher(ctx context.Context, o *Options, url string) *fetcher {
	f := &fetcher{
		ctx: ctx, client: o.httpClient(), url: url, shown: redact.URL(url), authorize: o.Authorize, log: o.logger(),
		retries: o.retries(), delay: o.retryDelay(), stall: o.stallTimeout(),
	}
	f.size.Store(-1)
	return f
}

func (f *fetcher) Read(p []byte) (int, error) {
	for {
		if f.body == nil {
			if err := f.open(); err != nil {
				return 0, err
			}
		}
		f.watchdog.Reset(f.stall)
		n, err := f.body.Read(p)
		if n > 0 {
			f.offset.Add(int64(n))
			f.progress = true
		}
		off := f.offset.Load()
		if err == io.EOF && (f.size.Load() < 0 || off >= f.size.Load()) {
			return n, io.EOF
		}
		if err == nil {
			return n, nil
		}
		if cerr := f.ctx.Err(); cerr != nil {
			f.closeBody()
			return n, cerr
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		f.closeBody()
		if ferr := f.failed(fmt.Errorf("connection lost after %d of %s bytes: %w", off, sizeText(f.size.Load()), err)); ferr != nil {
			return n, ferr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// failed counts a failure and waits before the next attempt, or returns the final error.
func (f *fetcher) failed(err error) error {
	if f.progress {
		f.failures = 0
	}
	f.progress = false
	f.failures++
	f.resumes++
	if f.failures > f.retries || f.resumes > maxResumes {
		return &downloadError{fmt.Errorf("%w (gave up after %d attempts, %d of %s bytes received)", err, f.resumes, f.offset.Load(), sizeText(f.size.Load()))}
	}
	d := min(f.delay<<min(f.failures-1, 10), 10*time.Second)
	f.log.Warn("agent package download interrupted, retrying", "url", f.shown, "offset", f.offset.Load(),
		"attempt", f.failures, "retryIn", d.String(), "error", err.Error())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-f.ctx.Done():
		return f.ctx.Err()
	}
}

// open sends the first request, or a range request to resume; it retries what can be retried.
func (f *fetcher) open() error {
	for {
		err := f.try()
		if err == nil {
			return nil
		}
		var se *HTTPStatusError
		if f.ctx.Err() != nil {
			return f.ctx.Err()
		}
		if errors.As(err, &se) && !retryableStatus(se.Status) || errors.Is(err, errChanged) {
			return err
		}
		if ferr := f.failed(err); ferr != nil {
			return ferr
		}
	}
}

// downloadError is a failure of the transfer itself (as opposed to bad content).
type downloadError struct{ err error }

func (e *downloadError) Error() string { return e.err.Error() }
func (e *downloadError) Unwrap() error { return e.err }

var errChanged = errors.New("the file changed on the server during the download")

func (f *fetcher) try() error {
	ctx, cancel := context.WithCancel(f.ctx)
	off := f.offset.Load()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		cancel()
		// The parser's message quotes the URL, or a piece of it (`invalid port ":pw"`).
		return exit.Config(fmt.Errorf("agent package URL %q is not a valid URL", f.shown))
	}
	// identity: a .tar.gz must arrive byte for byte (the hash is over those bytes), never
	// transparently gunzipped by the transport.
	req.Header.Set("Accept-Encoding", "identity")
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
		if f.validator != "" {
			req.Header.Set("If-Range", f.validator)
		}
	}
	if f.authorize != nil {
		f.authorize(req)
	}
	// The watchdog also covers the wait for response headers.
	f.watchdog = time.AfterFunc(f.stall, cancel)
	resp, err := f.client.Do(req)
	if err != nil {
		f.watchdog.Stop()
		cancel()
		// A *url.Error names the URL (of the last redirect) with only the password hidden.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redact.URL(ue.URL)
		}
		return err
	}
	fail := func(err error) error {
		f.watchdog.Stop()
		resp.Body.Close()
		cancel()
		return err
	}
	switch {
	case resp.StatusCode == http.StatusOK && off == 0:
		f.size.Store(resp.ContentLength)
		if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
			f.validator = et
		} else {
			f.validator = resp.Header.Get("Last-Modified")
		}
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != off {
			return fail(fmt.Errorf("GET %s: asked for bytes from %d, got Content-Range %q", f.shown, off, resp.Header.Get("Content-Range")))
		}
		if total >= 0 {
			f.size.Store(total)
		}
		f.log.Info("resuming agent package download", "url", f.shown, "offset", off)
	case resp.StatusCode == http.StatusOK && off > 0:
		if f.validator != "" {
			return fail(fmt.Errorf("GET %s: %w", f.shown, errChanged))
		}
		// No validator and no range support: skip what we already have.
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
			return fail(fmt.Errorf("GET %s: skip %d bytes already received: %w", f.shown, off, err))
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && f.size.Load() >= 0 && off >= f.size.Load():
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(""))
	default:
		return fail(&HTTPStatusError{URL: f.shown, Status: resp.StatusCode})
	}
	f.body, f.cancel = resp.Body, cancel
	return nil
}

func (f *fetcher) closeBody() {
	if f.watchdog != nil {
		f.watchdog.Stop()
	}
	if f.body != nil {
		f.body.Close()
		f.body = nil
	}
	if f.cancel != nil {
		f.cancel()
		f.cancel = nil
	}
}

// Close ends the download; a Read blocked in the network returns once the caller's context is
// cancelled.
func (f *fetcher) Close() error {
	f.closeBody()
	return nil
}

func retryableStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", reported as -1).
func parseContentRange(v string) (start, total int64, ok bool) {
	v, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, false
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

func sizeText(n int64) string {
	if n < 0 {
		return "?"
	}
	return strconv.FormatInt(n, 10)
}

// progress reports a download as log records every interval and, when bar is set (stdout is a
// terminal), as a redrawn bar.
type progress struct {
	stop chan struct{}
	done chan struct{}
}

func startProgress(log *slog.Logger, bar io.Writer, every time.Duration, version, url string, pos func() int64, size func() int64) *progress {
	p := &progress{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(p.done)
		logT := time.NewTicker(every)
		defer logT.Stop()
		var barC <-chan time.Time
		if bar != nil {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			barC = t.C
		}
		for {
			select {
			case <-p.stop:
				if bar != nil {
					drawBar(bar, pos(), size(), time.Since(start))
					fmt.Fprintln(bar)
				}
				return
			case <-logT.C:
				n, total, el := pos(), size(), time.Since(start)
				attrs := []any{"version", version, "url", url, "bytes", n, "rate", humanRate(n, el)}
				if total > 0 {
					attrs = append(attrs, "total", total, "percent", int(100*n/total))
				}
				log.Info("downloading agent package", attrs...)
			case <-barC:
				drawBar(bar, pos(), size(), time.Since(start))
			}
		}
	}()
	return p
}

func (p *progress) end() {
	close(p.stop)
	<-p.done
}

func drawBar(w io.Writer, n, total int64, el time.Duration) {
	const width = 30
	if total > 0 {
		fill := int(int64(width) * min(n, total) / total)
		fmt.Fprintf(w, "\r[%s%s] %3d%% %s of %s, %s ", strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
			100*n/total, humanBytes(n), humanBytes(total), humanRate(n, el))
		return
	}
	fmt.Fprintf(w, "\r%s, %s ", humanBytes(n), humanRate(n, el))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func humanRate(n int64, el time.Duration) string {
	if el <= 0 {
		return "-"
	}
	return humanBytes(int64(float64(n)/el.Seconds())) + "/s"
}

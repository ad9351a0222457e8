// Package sim is a local Azure DevOps simulator: an HTTP server that speaks the parts of the Azure
// DevOps REST protocol an agent and azp-entrypoint use (location discovery, pools, agents, sessions,
// message long polling, job requests, agent packages, agent OAuth), plus a control surface under
// /_sim/ that tests, demos and the azp-sim CLI use to queue jobs, inject faults and inspect state.
//
// It exists so that the product can be tested end to end on loopback without a real organisation.
// The wire format is whatever the real azure-devops-go-api v7 client expects, so the product's own
// client code runs unchanged against it. The product binary (cmd/azp-entrypoint) must never import
// this package; it is test and demo tooling only, and it never talks to the network beyond the
// address it listens on.
package sim

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Token scopes: "manage" is a PAT with Agent Pools (read & manage); "read" may only read.
const (
	ScopeManage = "manage"
	ScopeRead   = "read"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Org is the organisation name, the first path segment of the org URL. Default "sim".
	Org string
	// Pools are created at start, with ids 1, 2, ... Default: one pool "Default".
	Pools []string
	// Addr is the listen address. Default "127.0.0.1:0" (a random port).
	Addr string
	// TLS serves HTTPS with a generated self-signed certificate (see CACertPEM).
	TLS bool
	// TLSHosts are extra DNS names or IP addresses for the certificate.
	TLSHosts []string
	// PollTimeout is how long GET messages waits before answering 204. Default 1s.
	PollTimeout time.Duration
	// OfflineAfter is how long after its last poll an agent still counts as online. Default 5s.
	OfflineAfter time.Duration
	// SessionExpiry is how long a session without polls still conflicts with a new one. Default OfflineAfter.
	SessionExpiry time.Duration
	// AbandonAfter is how long an offline agent keeps an unfinished request before the server
	// finishes it as "abandoned" (releasing the agent for deletion). Default 30s; negative: never.
	AbandonAfter time.Duration
	// Tokens are registered at start: token -> scope.
	Tokens map[string]string
	// Now is the clock for timestamps and agent status. Default time.Now.
	Now func() time.Time
	// Logger receives one debug record per request. Default: discard.
	Logger *slog.Logger
}

// Server is the simulator. Create it with New, then Start it.
type Server struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	orgKey string // lower-cased org

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change (wakes long polls)

	pools      []*pool
	poolByID   map[int]*pool
	agentByID  map[int]*agent
	agentByCID map[uuid.UUID]*agent
	sessions   map[uuid.UUID]*session
	requests   []*request // by id order
	reqByID    map[int64]*request
	queue      []*request // unassigned, oldest first
	tokens     map[string]string
	agentToks  map[string]*agentToken
	packages   []*pkg
	downloads  map[string]string // filename -> path

	nextPoolID  int
	nextAgentID int
	nextReqID   int64
	nextMsgID   uint64

	faultMu    sync.Mutex
	faults     []*fault
	nextFault  int
	rateLimits []*rateLimit
	scaling    scalingState // demands and parallel jobs (scaling.go)
	reqLog     []LoggedRequest

	instanceID uuid.UUID
	userID     uuid.UUID

	listener net.Listener
	srv      *http.Server
	handler  http.Handler
	caPEM    []byte
	certPool *x509.CertPool
	tlsCert  *tls.Certificate
	baseURL  string
}

// New returns a Server with defaults filled in; it does not listen yet.
func New(opts Options) *Server {
	if opts.Org == "" {
		opts.Org = "sim"
	}
	if len(opts.Pools) == 0 {
		opts.Pools = []string{"Default"}
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.PollTimeout <= 0 {
		opts.PollTimeout = time.Second
	}
	if opts.OfflineAfter <= 0 {
		opts.OfflineAfter = 5 * time.Second
	}
	if opts.SessionExpiry <= 0 {
		opts.SessionExpiry = opts.OfflineAfter
	}
	if opts.AbandonAfter == 0 {
		opts.AbandonAfter = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:        opts,
		log:         opts.Logger,
		now:         func() time.Time { return opts.Now().UTC() },
		orgKey:      strings.ToLower(opts.Org),
		changed:     make(chan struct{}),
		poolByID:    map[int]*pool{},
		agentByID:   map[int]*agent{},
		agentByCID:  map[uuid.UUID]*agent{},
		sessions:    map[uuid.UUID]*session{},
		reqByID:     map[int64]*request{},
		tokens:      map[string]string{},
		agentToks:   map[string]*agentToken{},
		downloads:   map[string]string{},
		nextPoolID:  1,
		nextAgentID: 1,
		nextReqID:   1,
		nextMsgID:   1,
		instanceID:  uuid.New(),
		userID:      uuid.New(),
	}
	for _, p := range opts.Pools {
		s.AddPool(p)
	}
	for tok, scope := range opts.Tokens {
		s.tokens[tok] = scope
	}
	s.handler = s.buildHandler()
	return s
}

// Start listens and serves in the background. It returns the organisation URL.
func (s *Server) Start() (string, error) {
	if s.srv != nil {
		return "", errors.New("sim: server already started")
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return "", fmt.Errorf("sim: listen on %s: %w", s.opts.Addr, err)
	}
	scheme := "http"
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		// An empty map turns HTTP/2 off: fault injection hijacks connections, which needs HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.opts.TLS {
		if err := s.makeCert(ln.Addr()); err != nil {
			ln.Close()
			return "", err
		}
		ln = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{*s.tlsCert},
			NextProtos:   []string{"http/1.1"},
			MinVersion:   tls.VersionTLS12,
		})
		scheme = "https"
	}
	s.listener = ln
	host := ln.Addr().String()
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		// Listening on all interfaces (e.g. for containers); loopback still reaches us.
		host = net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
	}
	s.baseURL = scheme + "://" + host
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("sim: serve", "err", err)
		}
	}()
	s.log.Info("sim: listening", "url", s.OrgURL())
	return s.OrgURL(), nil
}

// Close stops the server at once, ending open long polls.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}

// URL is the server root (scheme://host:port) without the organisation.
func (s *Server) URL() string { return s.baseURL }

// OrgURL is the organisation URL (what AZP_URL would be).
func (s *Server) OrgURL() string { return s.baseURL + "/" + s.opts.Org }

// Handler serves the whole simulator (wire protocol and /_sim/), e.g. for httptest.
func (s *Server) Handler() http.Handler { return s.handler }

// CACertPEM is the self-signed certificate in PEM form (nil without TLS); trust it to talk to the server.
func (s *Server) CACertPEM() []byte { return s.caPEM }

// HTTPClient returns a client that trusts the server's certificate.
func (s *Server) HTTPClient() *http.Client {
	if s.certPool == nil {
		return &http.Client{}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.certPool}}}
}

// TLSConfig returns a client TLS config trusting the server (nil without TLS).
func (s *Server) TLSConfig() *tls.Config {
	if s.certPool == nil {
		return nil
	}
	return &tls.Config{RootCAs: s.certPool}
}

func (s *Server) scheme() string {
	if s.opts.TLS {
		return "https"
	}
	return "http"
}

// broadcast wakes every waiter; call with s.mu held.
func (s *Server) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

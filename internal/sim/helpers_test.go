package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

const (
	patManage = "pat-manage-0123456789"
	patRead   = "pat-read-0123456789"
	apiVer    = "7.1-preview.1"
)

var testKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var out [2]*rsa.PrivateKey
	for i := range out {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		out[i] = k
	}
	return out
})

func startSim(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.PollTimeout == 0 {
		opts.PollTimeout = 200 * time.Millisecond
	}
	opts.Tokens = maps.Clone(opts.Tokens)
	if opts.Tokens == nil {
		opts.Tokens = map[string]string{}
	}
	opts.Tokens[patManage], opts.Tokens[patRead] = ScopeManage, ScopeRead
	return StartForTest(t, opts)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func patConn(s *Server, pat string) *azuredevops.Connection {
	c := azuredevops.NewPatConnection(s.OrgURL(), pat)
	c.TlsConfig = s.TLSConfig()
	return c
}

func bearerConn(s *Server, tok string) *azuredevops.Connection {
	return &azuredevops.Connection{
		AuthorizationString:     "Bearer " + tok,
		BaseUrl:                 strings.ToLower(s.OrgURL()),
		SuppressFedAuthRedirect: true,
		TlsConfig:               s.TLSConfig(),
	}
}

func taClient(t *testing.T, s *Server, pat string) taskagent.Client {
	t.Helper()
	c, err := taskagent.NewClient(ctxT(t), patConn(s, pat))
	if err != nil {
		t.Fatalf("taskagent.NewClient: %v", err)
	}
	return c
}

// send calls a route through the SDK's generic client, with location discovery and version negotiation.
func send(ctx context.Context, conn *azuredevops.Connection, method, loc string, route map[string]string, q url.Values, body any) (*http.Response, error) {
	c := conn.GetClientByUrl(conn.BaseUrl)
	var rd io.Reader
	mt := ""
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(buf)
		mt = "application/json"
	}
	return c.Send(ctx, method, uuid.MustParse(loc), apiVer, route, q, rd, mt, "application/json", nil)
}

func decode[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
	return v
}

// wrapped asserts err is the SDK's WrappedError with the status and typeKey.
func wrapped(t *testing.T, err error, status int, typeKey string) {
	t.Helper()
	var we azuredevops.WrappedError
	var wp *azuredevops.WrappedError
	switch {
	case errors.As(err, &we):
	case errors.As(err, &wp):
		we = *wp
	default:
		t.Fatalf("want WrappedError %d %s, got %T %v", status, typeKey, err, err)
	}
	if we.StatusCode == nil || *we.StatusCode != status {
		t.Fatalf("want status %d, got %v (%v)", status, we.StatusCode, err)
	}
	if typeKey != "" && (we.TypeKey == nil || *we.TypeKey != typeKey) {
		t.Fatalf("want typeKey %s, got %v (%v)", typeKey, we.TypeKey, err)
	}
}

func newAgent(name string, key *rsa.PrivateKey) *taskagent.TaskAgent {
	exp := big.NewInt(int64(key.E)).Bytes()
	mod := key.N.Bytes()
	return &taskagent.TaskAgent{
		Name:              &name,
		Version:           ptr("4.258.1"),
		OsDescription:     ptr("Linux 6.1"),
		MaxParallelism:    ptr(1),
		ProvisioningState: ptr("Provisioned"),
		Authorization: &taskagent.TaskAgentAuthorization{
			PublicKey: &taskagent.TaskAgentPublicKey{Exponent: &exp, Modulus: &mod},
		},
		SystemCapabilities: &map[string]string{"Agent.Name": name},
	}
}

func addAgent(t *testing.T, c taskagent.Client, poolID int, name string, key *rsa.PrivateKey) *taskagent.TaskAgent {
	t.Helper()
	a, err := c.AddAgent(ctxT(t), taskagent.AddAgentArgs{PoolId: &poolID, Agent: newAgent(name, key)})
	if err != nil {
		t.Fatalf("AddAgent %s: %v", name, err)
	}
	return a
}

func createSession(ctx context.Context, conn *azuredevops.Connection, poolID, agentID int) (*http.Response, error) {
	return send(ctx, conn, http.MethodPost, LocSessions, map[string]string{"poolId": itoa(poolID)}, nil,
		taskagent.TaskAgentSession{OwnerName: ptr("test"), Agent: &taskagent.TaskAgentReference{Id: &agentID, Name: ptr("x"), Version: ptr("4.260.0")}})
}

func poll(ctx context.Context, conn *azuredevops.Connection, poolID int, sid uuid.UUID, last uint64) (*http.Response, error) {
	q := url.Values{"sessionId": {sid.String()}}
	if last > 0 {
		q.Set("lastMessageId", itoa(int(last)))
	}
	return send(ctx, conn, http.MethodGet, LocMessages, map[string]string{"poolId": itoa(poolID)}, q, nil)
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

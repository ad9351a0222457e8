package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/register"
)

// registration is this run's agent in the pool. It exists from the moment the pool is known,
// before anything is registered, so that whichever way Run ends, Remove knows what to undo.
type registration struct {
	server   *azdo.Client
	pool     int    // the pool's id
	poolName string // for messages
	name     string // the agent's name
	agentDir string
	keep     bool // AZP_DEREGISTER=false: Remove keeps the agent
	log      *slog.Logger

	// id is the agent this run owns, 0 until known.
	id int
	// mayExist is set once an agent with our name may exist although its id is unknown:
	// configure has started (it registers before it writes .agent), or the agent directory holds
	// a registration a killed predecessor left.
	mayExist bool
	removed  bool
	failed   bool // Remove gave up at its deadline
}

func (sv *supervisor) newRegistration(pool int) *registration {
	r := &registration{server: sv.server, pool: pool, poolName: sv.s.Pool, name: sv.name,
		agentDir: sv.s.AgentDir, keep: !sv.s.Deregister, log: sv.log}
	// A killed predecessor's registration of this name, still in a persistent agent directory.
	if a, _ := readAgentFile(sv.s.AgentDir); a != nil && a.AgentID > 0 && strings.EqualFold(a.AgentName, r.name) {
		r.id = a.AgentID
	}
	return r
}

// fact asks the server what became of this run's agent.
func (r *registration) fact(ctx context.Context) AgentFact {
	a, err := r.server.Agent(ctx, r.pool, r.name)
	switch {
	case err != nil:
		return AgentUnknown
	case a == nil:
		return AgentGone
	case r.id != 0 && a.ID != r.id, !r.holdsKeyOf(ctx, a.ID):
		return AgentNotOurs
	}
	return AgentOurs
}

// owned is whether anything of this run may be registered.
func (r *registration) owned() bool { return r != nil && (r.id != 0 || r.mayExist) }

// Remove deletes the agent from the pool with freshly fetched credentials, retrying until the
// deadline: the server refuses while it still holds the agent's cancelled job. It acts once; later
// calls return nil. Nothing registered, or AZP_DEREGISTER=false, is nothing to do.
func (r *registration) Remove(deadline time.Time) error {
	if r == nil || r.removed {
		return nil
	}
	r.removed = true
	if !r.owned() {
		return nil
	}
	if r.keep {
		r.log.Info("keeping the registration (AZP_DEREGISTER=false)", "agent", r.name)
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var lastErr error
	for attempt := 1; ; attempt++ {
		done, err := r.removeOnce(ctx)
		if done {
			return err
		}
		lastErr = err
		r.log.Debug("deregistration refused; retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			r.failed = true
			if r.id == 0 {
				return exit.Runtime(fmt.Errorf("deregister: look up agent %q: %w (remove it later with `azp-entrypoint prune`)", r.name, lastErr))
			}
			return exit.Runtime(fmt.Errorf("deregister agent %q (id %d) from pool %q: %w; the stop deadline has passed, remove it later with `azp-entrypoint prune`", r.name, r.id, r.poolName, lastErr))
		case <-time.After(min(time.Second, time.Duration(attempt)*250*time.Millisecond)):
		}
	}
}

// removeOnce deletes the agent if it is still ours: the agent carrying our name must have our id
// (with --replace another container of the same name may have taken it over; when this run's id
// is not known yet, as during configure, whatever carries our name is ours). done is false when it
// should be tried again.
func (r *registration) removeOnce(ctx context.Context) (done bool, err error) {
	a, err := r.server.Agent(ctx, r.pool, r.name)
	if err != nil {
		return false, err
	}
	switch {
	case a == nil:
		r.log.Info("agent already gone from the pool", "agent", r.name, "agent_id", r.id)
	case r.id != 0 && a.ID != r.id:
		r.log.Warn("another agent now carries this agent's name; leaving it in the pool", "agent", r.name, "ours", r.id, "theirs", a.ID)
	case !r.holdsKeyOf(ctx, a.ID):
		// --replace keeps the id and the OAuth client but installs the replacing listener's key.
		r.log.Warn("another registration has replaced this agent (its key or OAuth client is not ours); leaving it in the pool", "agent", r.name, "agent_id", a.ID)
	default:
		start := time.Now()
		if err := r.server.DeleteAgent(ctx, r.pool, a.ID); err != nil { // an agent already gone counts as removed
			return false, err
		}
		r.log.Info("agent deregistered", "agent", r.name, "agent_id", a.ID, "took", time.Since(start).Round(time.Millisecond).String())
	}
	if werr := wipeConfig(r.agentDir); werr != nil {
		r.log.Warn("remove the local agent configuration", "err", werr)
	}
	r.id, r.mayExist = 0, false
	return true, nil
}

// holdsKeyOf reports whether the agent directory holds the credential of the registration the
// server has: our OAuth client id (.credentials) and our public key (.credentials_rsaparams), each
// compared where both sides are known. The listener's files in the agent root are root's.
func (r *registration) holdsKeyOf(ctx context.Context, id int) bool {
	a, err := r.server.AgentByID(ctx, r.pool, id)
	if err != nil || a == nil {
		return true // not known: the id and name decide
	}
	if a.ClientID != "" {
		var c register.Credentials
		if data, err := os.ReadFile(filepath.Join(r.agentDir, register.FileCredentials)); err == nil &&
			json.Unmarshal(bytes.TrimPrefix(data, utf8BOM), &c) == nil && c.Data["clientId"] != "" &&
			!strings.EqualFold(c.Data["clientId"], a.ClientID) {
			return false
		}
	}
	if len(a.PublicKeyModulus) > 0 {
		if data, err := os.ReadFile(filepath.Join(r.agentDir, register.FileKey)); err == nil {
			if k, err := register.DecodeKey(data); err == nil && k.N.Cmp(new(big.Int).SetBytes(a.PublicKeyModulus)) != 0 {
				return false
			}
		}
	}
	return true
}

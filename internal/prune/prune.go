// Package prune removes the ghosts of SIGKILLed agent containers from a pool: agents that are
// offline, whose name starts with the given prefix (or any name with AllOffline), and whose status
// changed to offline at least OfflineFor ago.
//
// It never deletes an online agent, an agent outside the prefix, or an agent that went offline
// recently (it may be restarting). Deletions run with bounded concurrency; the client underneath
// honours 429 Retry-After, so a large pool is pruned at the rate the server allows.
package prune

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// Lister is what prune needs of the Azure DevOps client (*azdo.Client).
type Lister interface {
	Agents(ctx context.Context, poolID int) ([]azdo.Agent, error)
	DeleteAgent(ctx context.Context, poolID, agentID int) error
}

// Options choose what is pruned.
type Options struct {
	Prefix      string        // required unless AllOffline
	AllOffline  bool          // every offline agent, whatever its name (Prefix is ignored)
	OfflineFor  time.Duration // minimum time offline; 0 means the default, 1h
	DryRun      bool          // list, delete nothing
	Concurrency int           // parallel deletions; default 8
	Now         func() time.Time
	Out         io.Writer // dry-run list and summary line; nil: none
	Logger      *slog.Logger
}

// DefaultOfflineFor is the contract's default for --offline-for.
const DefaultOfflineFor = time.Hour

// Summary counts what happened to every agent of the pool.
type Summary struct {
	Matched           int // offline long enough and matching the name rule
	Deleted           int
	Failed            int
	SkippedOnline     int
	SkippedRecent     int // offline for less than OfflineFor
	SkippedOtherNames int
	DryRun            bool
}

func (s Summary) String() string {
	if s.DryRun {
		return fmt.Sprintf("prune (dry run): would delete %d, skipped %d online, %d recently offline, %d other names",
			s.Matched, s.SkippedOnline, s.SkippedRecent, s.SkippedOtherNames)
	}
	return fmt.Sprintf("prune: deleted %d, failed %d, skipped %d online, %d recently offline, %d other names",
		s.Deleted, s.Failed, s.SkippedOnline, s.SkippedRecent, s.SkippedOtherNames)
}

// Validate checks the options the user gave; a missing prefix is a configuration error.
func (o *Options) Validate() error {
	o.Prefix = strings.TrimSpace(o.Prefix)
	if !o.AllOffline && o.Prefix == "" {
		return exit.Config(errors.New("prune: --prefix is required (or AZP_AGENT_NAME_PREFIX), unless --all-offline is given"))
	}
	if o.OfflineFor < 0 {
		return exit.Config(fmt.Errorf("prune: --offline-for = %s: must not be negative", o.OfflineFor))
	}
	return nil
}

// Run prunes the pool. The error is non-nil when the options are wrong (exit 2), the agents
// cannot be listed, or any deletion failed (exit 1; the log names each agent).
func Run(ctx context.Context, c Lister, poolID int, o Options) (Summary, error) {
	if err := o.Validate(); err != nil {
		return Summary{}, err
	}
	if o.OfflineFor == 0 {
		o.OfflineFor = DefaultOfflineFor
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	sum := Summary{DryRun: o.DryRun}
	agents, err := c.Agents(ctx, poolID)
	if err != nil {
		return sum, err
	}
	now := o.Now()
	var doomed []azdo.Agent
	for _, a := range agents {
		switch {
		case !o.AllOffline && !strings.HasPrefix(strings.ToLower(a.Name), strings.ToLower(o.Prefix)):
			// Agent names compare case-insensitively on the server; so does the prefix.
			sum.SkippedOtherNames++
		case strings.HasSuffix(strings.ToLower(a.Name), "placeholder"):
			// A scaler's offline placeholder (`<prefix>placeholder`) keeps jobs queued: never pruned.
			sum.SkippedOtherNames++
		case !strings.EqualFold(a.Status, "offline"):
			// Anything but an explicit offline (online, or a status this client does not know)
			// is left alone.
			sum.SkippedOnline++
		case now.Sub(offlineSince(a)) < o.OfflineFor:
			sum.SkippedRecent++
		default:
			doomed = append(doomed, a)
		}
	}
	sum.Matched = len(doomed)
	sort.Slice(doomed, func(i, j int) bool { return doomed[i].ID < doomed[j].ID })
	if o.DryRun {
		for _, a := range doomed {
			fmt.Fprintf(o.Out, "would delete %s (id %d, offline since %s)\n", a.Name, a.ID, offlineSince(a).UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(o.Out, sum.String())
		return sum, nil
	}

	var (
		mu       sync.Mutex
		failures []string
		wg       sync.WaitGroup
		work     = make(chan azdo.Agent)
	)
	for i := 0; i < o.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work {
				err := c.DeleteAgent(ctx, poolID, a.ID)
				mu.Lock()
				if err != nil {
					sum.Failed++
					failures = append(failures, a.Name)
					o.Logger.Warn("could not delete the agent", "agent", a.Name, "id", a.ID, "error", err.Error())
				} else {
					sum.Deleted++
					o.Logger.Debug("deleted the agent", "agent", a.Name, "id", a.ID)
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, a := range doomed {
		select {
		case work <- a:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	fmt.Fprintln(o.Out, sum.String())
	if ctx.Err() != nil {
		return sum, exit.Runtime(fmt.Errorf("prune interrupted after deleting %d of %d agents: %w", sum.Deleted, sum.Matched, ctx.Err()))
	}
	if sum.Failed > 0 {
		sort.Strings(failures)
		names := failures
		if len(names) > 10 {
			names = append(names[:10:10], fmt.Sprintf("and %d more", len(failures)-10))
		}
		return sum, exit.Runtime(fmt.Errorf("prune: %d of %d agents could not be deleted (%s); run prune again later", sum.Failed, sum.Matched, strings.Join(names, ", ")))
	}
	return sum, nil
}

// offlineSince is when the agent went offline: statusChangedOn, else its creation (an agent that
// never came online), else the zero time (long ago).
func offlineSince(a azdo.Agent) time.Time {
	if !a.StatusChangedOn.IsZero() {
		return a.StatusChangedOn
	}
	return a.CreatedOn
}

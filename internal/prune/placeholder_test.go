package prune_test

import (
	"context"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/prune"
)

// A scaler's placeholder (`<prefix>placeholder`) is offline forever by design; prune leaves it
// alone, with a prefix or with --all-offline.
func TestPruneSkipsPlaceholders(t *testing.T) {
	s, c, pool := setup(t)
	if err := c.AddOfflineAgent(context.Background(), pool, "ci-placeholder", "4.261.0", map[string]string{"docker": "true"}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []prune.Options{{Prefix: "ci-", OfflineFor: time.Nanosecond}, {AllOffline: true, OfflineFor: time.Nanosecond}} {
		if _, err := prune.Run(context.Background(), c, pool, o); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Agent("Default", "ci-placeholder"); !ok {
			t.Fatalf("%+v deleted the placeholder", o)
		}
	}
	if _, ok := s.Agent("Default", "ci-old-0"); ok {
		t.Fatal("an ordinary old offline agent was kept")
	}
}

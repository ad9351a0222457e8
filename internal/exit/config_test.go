package exit_test

import (
	"fmt"
	"testing"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// A bare *config.Error is a configuration error: it unwraps to exit.ErrConfig, with no exit.Config
// around it.
func TestCodeBareConfigError(t *testing.T) {
	for _, err := range []error{
		&config.Error{Setting: "AZP_URL", Problem: "required"},
		fmt.Errorf("resolve: %w", &config.Error{Setting: "AZP_POOL", Problem: "empty"}),
		&config.CredentialError{Problem: "no credential"},
	} {
		if got := exit.Code(err); got != exit.Usage {
			t.Errorf("Code(%v) = %d, want %d", err, got, exit.Usage)
		}
	}
}

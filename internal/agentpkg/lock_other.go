//go:build !unix

package agentpkg

import (
	"context"
	"errors"
)

func lockFile(ctx context.Context, path string) (func(), error) {
	return nil, errors.New("AZP_AGENT_CACHE needs file locks, which this system does not offer")
}

package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// agentFile is the agent's `.agent`: its existence is what "configured" means to the listener.
type agentFile struct {
	AgentID    int    `json:"agentId"`
	AgentName  string `json:"agentName"`
	PoolID     int    `json:"poolId"`
	PoolName   string `json:"poolName"`
	ServerURL  string `json:"serverUrl"`
	WorkFolder string `json:"workFolder"`
}

// configFiles are what `configure` writes and `remove` deletes. Removing them all is safe only
// once the registration is gone from the server (or is being replaced).
var configFiles = []string{".agent", ".credentials", ".credentials_rsaparams", ".proxy", ".proxycredentials", ".proxybypass", ".certificates", ".options", ".setup_info"}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// readAgentFile reads `.agent`; it returns nil, nil when the agent is not configured.
func readAgentFile(agentDir string) (*agentFile, error) {
	data, err := os.ReadFile(filepath.Join(agentDir, ".agent"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a agentFile
	if err := json.Unmarshal(bytes.TrimPrefix(data, utf8BOM), &a); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(agentDir, ".agent"), err)
	}
	return &a, nil
}

// matches reports whether an existing configuration is this agent's: same server, pool, name and
// work folder. Anything else is configured again (with --replace, which keeps a known agent's ID).
func (a *agentFile) matches(url, pool, name, work string) bool {
	norm := func(s string) string { return strings.ToLower(strings.TrimRight(s, "/")) }
	return a != nil && a.AgentID > 0 &&
		norm(a.ServerURL) == norm(url) &&
		strings.EqualFold(a.PoolName, pool) &&
		strings.EqualFold(a.AgentName, name) &&
		filepath.Clean(a.WorkFolder) == filepath.Clean(work)
}

// wipeConfig removes the agent's local configuration so that `configure` can run again.
func wipeConfig(agentDir string) error {
	var errs []error
	for _, f := range configFiles {
		if err := os.Remove(filepath.Join(agentDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

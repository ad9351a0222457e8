//go:build linux

package register_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/azdo"
	"github.com/azp-entrypoint/azp-entrypoint/internal/register"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/sim"
)

const (
	managePAT = "manage-pat-0123456789abcdef"
	spToken   = "sp-entra-token-0123456789"
)

func startSim(t *testing.T) *sim.Server {
	t.Helper()
	s := sim.New(sim.Options{Tokens: map[string]string{managePAT: sim.ScopeManage, spToken: sim.ScopeManage}})
	if _, err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func client(t *testing.T, s *sim.Server, header string) *azdo.Client {
	t.Helper()
	c, err := azdo.New(context.Background(), azdo.Options{URL: s.OrgURL(), HTTPClient: s.HTTPClient(),
		Auth:           func(context.Context) (string, error) { return header, nil },
		UnreachableFor: 2 * time.Second, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond, MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func openDir(t *testing.T, path string) *register.Dir {
	t.Helper()
	d, err := register.OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func owner() register.Owner {
	if os.Geteuid() == 0 {
		return register.RootOwned(1000)
	}
	return register.Private()
}

func register1(t *testing.T, c *azdo.Client, dir string) register.Result {
	t.Helper()
	res, err := register.Register(context.Background(), register.Options{Client: c, Dir: openDir(t, dir), Owner: owner(),
		Pool: "Default", Name: "agent-1", Work: "_work", Version: "4.260.0"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// readJSON reads a file the way the listener does (UTF-8 with BOM) and checks the BOM is there.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, register.BOM) {
		t.Errorf("%s does not start with a UTF-8 BOM (IOUtil.SaveObject writes Encoding.UTF8)", path)
	}
	if err := json.Unmarshal(bytes.TrimPrefix(b, register.BOM), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func keys(m map[string]json.RawMessage) string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return strings.Join(k, ",")
}

func checkFiles(t *testing.T, s *sim.Server, c *azdo.Client, dir string) *rsa.PrivateKey {
	t.Helper()
	var agent, creds, key map[string]json.RawMessage
	readJSON(t, filepath.Join(dir, ".agent"), &agent)
	readJSON(t, filepath.Join(dir, ".credentials"), &creds)
	readJSON(t, filepath.Join(dir, ".credentials_rsaparams"), &key)
	if got, want := keys(agent), "agentId,agentName,poolId,poolName,serverUrl,workFolder"; got != want {
		t.Errorf(".agent keys = %s, want %s", got, want)
	}
	if got, want := keys(creds), "data,scheme"; got != want {
		t.Errorf(".credentials keys = %s, want %s", got, want)
	}
	// RSAParametersSerializable.GetObjectData's names, exactly.
	if got, want := keys(key), "ContainerName,UseCng,d,dp,dq,exponent,inverseQ,modulus,p,q"; got != want {
		t.Errorf(".credentials_rsaparams keys = %s, want %s", got, want)
	}
	var settings register.Settings
	var cr register.Credentials
	readJSON(t, filepath.Join(dir, ".agent"), &settings)
	readJSON(t, filepath.Join(dir, ".credentials"), &cr)
	view, ok := s.Agent("Default", "agent-1")
	if !ok || view.ID != settings.AgentID || settings.PoolName != "Default" || settings.WorkFolder != "_work" || settings.ServerURL != s.OrgURL() {
		t.Errorf(".agent = %+v; server has %+v (found %v)", settings, view, ok)
	}
	if cr.Scheme != "OAuth" || cr.Data["clientId"] == "" || cr.Data["authorizationUrl"] == "" || cr.Data["oauthEndpointUrl"] == "" || len(cr.Data) != 3 {
		t.Errorf(".credentials = %+v", cr)
	}
	// .NET's ImportParameters wants fixed lengths: D and modulus 256 bytes, the halves 128.
	b, _ := os.ReadFile(filepath.Join(dir, ".credentials_rsaparams"))
	want := map[string]int{"d": 256, "modulus": 256, "p": 128, "q": 128, "dp": 128, "dq": 128, "inverseQ": 128, "exponent": 3}
	for n, size := range want {
		var v []byte
		if err := json.Unmarshal(key[n], &v); err != nil || len(v) != size {
			t.Errorf("RSA parameter %s: %d bytes (%v), want %d", n, len(v), err, size)
		}
	}
	k, err := register.DecodeKey(b)
	if err != nil {
		t.Fatalf("decode the key file: %v", err)
	}
	// Ownership and mode: root:agent 0440 as root, private otherwise.
	for _, f := range []string{".agent", ".credentials", ".credentials_rsaparams"} {
		st, err := os.Lstat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		o := owner()
		if st.Mode().Perm() != o.Mode || !st.Mode().IsRegular() || (o.UID >= 0 && (int(sys.Uid) != o.UID || int(sys.Gid) != o.GID)) {
			t.Errorf("%s: mode %v uid %d gid %d; want %v %d:%d", f, st.Mode(), sys.Uid, sys.Gid, o.Mode, o.UID, o.GID)
		}
	}
	// The listener's way in: a token from the key in the file at the stored endpoint.
	if _, err := c.AgentToken(context.Background(), cr.Data["oauthEndpointUrl"], cr.Data["authorizationUrl"], cr.Data["clientId"], k); err != nil {
		t.Errorf("agent token with the written key: %v", err)
	}
	return k
}

func TestRegisterAddsAgentAndWritesListenerFiles(t *testing.T) {
	s := startSim(t)
	c := client(t, s, secrets.BasicAuth(managePAT))
	dir := t.TempDir()
	res := register1(t, c, dir)
	if res.Replaced {
		t.Error("a new agent was reported as replaced")
	}
	checkFiles(t, s, c, dir)
	// The token service checks the assertion's signature: another key is refused.
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	var cr register.Credentials
	readJSON(t, filepath.Join(dir, ".credentials"), &cr)
	if _, err := c.AgentToken(context.Background(), cr.Data["oauthEndpointUrl"], cr.Data["authorizationUrl"], cr.Data["clientId"], other); err == nil {
		t.Error("the token service accepted an assertion signed by a key that was never registered")
	}
	// No temporary file is left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Errorf("agent root holds %d entries, want the 3 files: %v", len(ents), ents)
	}
}

func TestRegisterReplaceKeepsIDAndRetiresOldKey(t *testing.T) {
	s := startSim(t)
	c := client(t, s, secrets.BasicAuth(managePAT))
	dir := t.TempDir()
	first := register1(t, c, dir)
	oldKey := checkFiles(t, s, c, dir)
	var oldCreds register.Credentials
	readJSON(t, filepath.Join(dir, ".credentials"), &oldCreds)

	second := register1(t, c, dir)
	if !second.Replaced || second.Settings.AgentID != first.Settings.AgentID {
		t.Errorf("second registration: replaced=%v id %d, want replaced and id %d", second.Replaced, second.Settings.AgentID, first.Settings.AgentID)
	}
	checkFiles(t, s, c, dir)
	if _, err := c.AgentToken(context.Background(), oldCreds.Data["oauthEndpointUrl"], oldCreds.Data["authorizationUrl"], oldCreds.Data["clientId"], oldKey); err == nil {
		t.Error("the replaced key still gets tokens")
	}
	if n := len(s.Agents("Default")); n != 1 {
		t.Errorf("pool holds %d agents, want 1", n)
	}
}

func TestRegisterWithServicePrincipalToken(t *testing.T) {
	s := startSim(t)
	c := client(t, s, "Bearer "+spToken)
	dir := t.TempDir()
	register1(t, c, dir)
	checkFiles(t, s, c, dir)
}

func TestRegisterUnknownPoolWritesNothing(t *testing.T) {
	s := startSim(t)
	c := client(t, s, secrets.BasicAuth(managePAT))
	dir := t.TempDir()
	_, err := register.Register(context.Background(), register.Options{Client: c, Dir: openDir(t, dir), Owner: owner(),
		Pool: "Nope", Name: "agent-1", Work: "_work", Version: "4.260.0"})
	if err == nil || !strings.Contains(err.Error(), "AZP_POOL") {
		t.Fatalf("err = %v, want an AZP_POOL error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files written after a failed registration: %v", ents)
	}
}

func TestDecodeKeyIsCaseSensitive(t *testing.T) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	b, err := register.EncodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := register.DecodeKey(b); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	bad := bytes.Replace(b, []byte(`"inverseQ"`), []byte(`"InverseQ"`), 1)
	if _, err := register.DecodeKey(bad); err == nil || !strings.Contains(err.Error(), "inverseQ") {
		t.Errorf("a key file with InverseQ instead of inverseQ decoded: %v", err)
	}
}

// TestWriteNeverFollowsPlantedLinks plants a symlink and a hard link at the names the
// registration writes; the files outside stay untouched and the names become regular files.
func TestWriteNeverFollowsPlantedLinks(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, ".agent")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, filepath.Join(dir, ".credentials")); err != nil {
		t.Fatal(err)
	}
	d := openDir(t, dir)
	for _, n := range []string{".agent", ".credentials"} {
		if err := d.WriteFile(n, []byte("new"), register.Private()); err != nil {
			t.Fatal(err)
		}
		st, err := os.Lstat(filepath.Join(dir, n))
		if err != nil || !st.Mode().IsRegular() || st.Sys().(*syscall.Stat_t).Nlink != 1 {
			t.Errorf("%s after write: %v %v", n, st.Mode(), err)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "original" {
		t.Errorf("the file behind the planted link was written: %q", b)
	}
	// A path with a symlink component is refused.
	link := filepath.Join(outside, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if _, err := register.OpenDir(link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("OpenDir through a symlink: %v", err)
	}
}

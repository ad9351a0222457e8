package fakeagent

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// The agent root files are written like IOUtil.SaveObject: camelCase keys, default values omitted,
// indented, with a UTF-8 byte order mark.

var bom = []byte("\xef\xbb\xbf")

// AgentSettings is the content of .agent.
type AgentSettings struct {
	AcceptTeeEula     bool   `json:"acceptTeeEula,omitempty"`
	AgentID           int    `json:"agentId,omitempty"`
	AgentName         string `json:"agentName,omitempty"`
	AlwaysExtractTask bool   `json:"alwaysExtractTask,omitempty"`
	DisableLogUploads bool   `json:"disableLogUploads,omitempty"`
	PoolID            int    `json:"poolId,omitempty"`
	PoolName          string `json:"poolName,omitempty"`
	ServerURL         string `json:"serverUrl,omitempty"`
	WorkFolder        string `json:"workFolder,omitempty"`
}

// Credentials is the content of .credentials.
type Credentials struct {
	Scheme string            `json:"scheme,omitempty"`
	Data   map[string]string `json:"data,omitempty"`
}

// rsaParams mirrors .NET's RSAParameters as RSAFileKeyManager stores it (base64 big-endian integers).
type rsaParams struct {
	D        []byte `json:"d,omitempty"`
	DP       []byte `json:"dp,omitempty"`
	DQ       []byte `json:"dq,omitempty"`
	Exponent []byte `json:"exponent,omitempty"`
	InverseQ []byte `json:"inverseQ,omitempty"`
	Modulus  []byte `json:"modulus,omitempty"`
	P        []byte `json:"p,omitempty"`
	Q        []byte `json:"q,omitempty"`
}

type certSettings struct {
	CACert                   string `json:"caCert,omitempty"`
	SkipServerCertValidation bool   `json:"skipServerCertValidation,omitempty"`
}

func saveJSON(path string, v any, perm os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(append([]byte(nil), bom...), b...), perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func loadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(bytes.TrimPrefix(b, bom), v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

func encodeRSA(k *rsa.PrivateKey) rsaParams {
	k.Precompute()
	return rsaParams{
		D:        k.D.Bytes(),
		DP:       k.Precomputed.Dp.Bytes(),
		DQ:       k.Precomputed.Dq.Bytes(),
		Exponent: big.NewInt(int64(k.E)).Bytes(),
		InverseQ: k.Precomputed.Qinv.Bytes(),
		Modulus:  k.N.Bytes(),
		P:        k.Primes[0].Bytes(),
		Q:        k.Primes[1].Bytes(),
	}
}

func decodeRSA(p rsaParams) (*rsa.PrivateKey, error) {
	if len(p.Modulus) == 0 || len(p.D) == 0 || len(p.P) == 0 || len(p.Q) == 0 {
		return nil, errors.New("incomplete RSA parameters")
	}
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).SetBytes(p.Modulus), E: int(new(big.Int).SetBytes(p.Exponent).Int64())},
		D:         new(big.Int).SetBytes(p.D),
		Primes:    []*big.Int{new(big.Int).SetBytes(p.P), new(big.Int).SetBytes(p.Q)},
	}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	k.Precompute()
	return k, nil
}

func (a *agentRoot) path(name string) string { return filepath.Join(a.dir, name) }

func (a *agentRoot) configured() bool {
	_, err := os.Stat(a.path(FileAgent))
	return err == nil
}

// loadAgent reads .agent like ConfigurationStore.GetSettings (IOUtil.LoadObject: Json.NET, BOM
// tolerated, property names matched without regard to case). An empty or truncated file is an
// error (the real one fails on the null or broken object it gets).
func (a *agentRoot) loadAgent() (AgentSettings, error) {
	var s AgentSettings
	if err := loadJSON(a.path(FileAgent), &s); err != nil {
		return s, err
	}
	if s.AgentID == 0 || s.PoolID == 0 || s.ServerURL == "" {
		return s, fmt.Errorf("%s holds no agent registration (agentId, poolId, serverUrl)", a.path(FileAgent))
	}
	return s, nil
}

// loadCredentials reads .credentials and .credentials_rsaparams like CredentialManager.LoadCredentials
// and RSAFileKeyManager.GetKey, with their messages.
func (a *agentRoot) loadCredentials() (Credentials, *rsa.PrivateKey, error) {
	var c Credentials
	if _, err := os.Stat(a.path(FileCredentials)); err != nil {
		// ConfigurationStore.HasCredentials is File.Exists; the text has two spaces.
		//lint:ignore ST1005 the real listener's text, which the supervisor reads
		return c, nil, errors.New("Credentials not stored.  Must reconfigure.")
	}
	if err := loadJSON(a.path(FileCredentials), &c); err != nil {
		return c, nil, err
	}
	// CredentialManager.GetCredentialProvider: the scheme names a provider type; the listener of
	// an OAuth registration needs clientId and authorizationUrl (OAuthCredential.GetVssCredentials).
	if !strings.EqualFold(c.Scheme, "OAuth") {
		return c, nil, fmt.Errorf("the fake agent supports only the OAuth credential scheme, not %q", c.Scheme)
	}
	if c.Data["clientId"] == "" || c.Data["authorizationUrl"] == "" {
		return c, nil, errors.New("clientId and authorizationUrl are required in the OAuth credential data")
	}
	if _, err := os.Stat(a.path(FileRSAParams)); err != nil {
		return c, nil, fmt.Errorf("RSA key file %s was not found", a.path(FileRSAParams)) // RSAKeyFileNotFound
	}
	k, err := loadRSA(a.path(FileRSAParams))
	if err != nil {
		return c, nil, err
	}
	return c, k, nil
}

// rsaMembers are the members RSAParametersSerializable's deserialization constructor asks for
// with SerializationInfo.GetValue (src/Agent.Listener/Configuration/IRSAKeyManager.cs): exact,
// case-sensitive names, each required ("Member 'd' was not found." otherwise), base64 byte arrays.
var rsaMembers = []string{"d", "dp", "dq", "exponent", "inverseQ", "modulus", "p", "q"}

func loadRSA(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimPrefix(b, bom), &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	vals := map[string][]byte{}
	for _, name := range rsaMembers {
		raw, ok := m[name]
		if !ok {
			//lint:ignore ST1005 the real RSAFileKeyManager's text
			return nil, fmt.Errorf("Member '%s' was not found.", name)
		}
		var v []byte
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%s: member '%s': %w", path, name, err)
		}
		vals[name] = v
	}
	k, err := decodeRSA(rsaParams{D: vals["d"], DP: vals["dp"], DQ: vals["dq"], Exponent: vals["exponent"],
		InverseQ: vals["inverseQ"], Modulus: vals["modulus"], P: vals["p"], Q: vals["q"]})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// proxyFor is the proxy the real listener uses (VstsAgentWebProxy.LoadProxySetting): the first
// line of <root>/.proxy, trimmed; else the ProxyAddress knob (VSTS_HTTP_PROXY, then http_proxy;
// never https_proxy). Anything that is not an absolute URI is ignored.
func proxyFor(a *agentRoot) *url.URL {
	var addr string
	if b, err := os.ReadFile(a.path(".proxy")); err == nil {
		addr, _, _ = strings.Cut(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
		addr = strings.TrimSpace(addr)
	}
	if addr == "" {
		addr = os.Getenv("VSTS_HTTP_PROXY")
	}
	if addr == "" {
		addr = os.Getenv("http_proxy")
	}
	u, err := url.Parse(addr)
	if addr == "" || err != nil || !u.IsAbs() || u.Host == "" {
		return nil
	}
	return u
}

func (a *agentRoot) loadCerts() certSettings {
	var c certSettings
	_ = loadJSON(a.path(FileCerts), &c)
	return c
}

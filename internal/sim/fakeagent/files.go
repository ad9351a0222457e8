package fakeagent

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
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

func (a *agentRoot) loadSettings() (AgentSettings, Credentials, *rsa.PrivateKey, error) {
	var s AgentSettings
	var c Credentials
	var p rsaParams
	if err := loadJSON(a.path(FileAgent), &s); err != nil {
		return s, c, nil, err
	}
	if err := loadJSON(a.path(FileCredentials), &c); err != nil {
		return s, c, nil, err
	}
	if err := loadJSON(a.path(FileRSAParams), &p); err != nil {
		return s, c, nil, err
	}
	k, err := decodeRSA(p)
	if err != nil {
		return s, c, nil, fmt.Errorf("%s: %w", a.path(FileRSAParams), err)
	}
	return s, c, k, nil
}

func (a *agentRoot) loadCerts() certSettings {
	var c certSettings
	_ = loadJSON(a.path(FileCerts), &c)
	return c
}

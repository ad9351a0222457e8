package register

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// The agent root's files, in exactly the shape the real listener reads them.
//
// IOUtil.SaveObject (src/Agent.Sdk/Util/IOUtil.cs) writes StringUtil.ConvertToJson(obj) with
// File.WriteAllText(path, json, Encoding.UTF8): a UTF-8 byte order mark, Newtonsoft's indented
// layout (two spaces), and the VSS serializer settings (camelCase names; the [DataMember
// (EmitDefaultValue = false)] members of AgentSettings are left out when default).

// BOM is the UTF-8 byte order mark Encoding.UTF8 writes first.
var BOM = []byte{0xEF, 0xBB, 0xBF}

// Settings is `.agent`: AgentSettings (src/Microsoft.VisualStudio.Services.Agent/ConfigurationStore.cs)
// in its declaration order, default values omitted. Its existence is what "configured" means
// (ConfigurationStore.IsConfigured).
type Settings struct {
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

// Credentials is `.credentials`: CredentialData (src/Microsoft.VisualStudio.Services.Agent/
// CredentialData.cs), {scheme, data}. For an agent registered with a public key the scheme is
// "OAuth" and data holds clientId, authorizationUrl and oauthEndpointUrl
// (ConfigurationManager.UpdateCredentialData); no PAT is stored.
type Credentials struct {
	Scheme string            `json:"scheme"`
	Data   map[string]string `json:"data"`
}

// rsaFile is `.credentials_rsaparams` as RSAFileKeyManager.CreateKey saves RSAParametersSerializable
// (src/Agent.Listener/Configuration/IRSAKeyManager.cs). That class is ISerializable: GetObjectData
// names the members itself ("ContainerName", "UseCng", then "d", "dp", "dq", "exponent", "inverseQ",
// "modulus", "p", "q"), the contract resolver does not rename them, and the reading constructor looks
// them up case-sensitively (SerializationInfo.GetValue). Byte arrays are base64.
type rsaFile struct {
	ContainerName string `json:"ContainerName"`
	UseCng        bool   `json:"UseCng"`
	D             []byte `json:"d"`
	DP            []byte `json:"dp"`
	DQ            []byte `json:"dq"`
	Exponent      []byte `json:"exponent"`
	InverseQ      []byte `json:"inverseQ"`
	Modulus       []byte `json:"modulus"`
	P             []byte `json:"p"`
	Q             []byte `json:"q"`
}

// marshal renders v like IOUtil.SaveObject: BOM, indented JSON.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.Write(BOM)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // Newtonsoft does not escape <, > and & either
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil // File.WriteAllText adds no newline
}

// EncodeKey renders the private key as the RSA parameters file. .NET's RSA.ImportParameters wants
// D as long as the modulus and P, Q, DP, DQ, InverseQ half as long, big-endian with leading zeros
// kept (RSAParameters as ExportParameters(true) produced them), so each is padded to its length.
func EncodeKey(k *rsa.PrivateKey) ([]byte, error) {
	if len(k.Primes) != 2 {
		return nil, errors.New("the agent key must have exactly two primes")
	}
	k.Precompute()
	n := (k.N.BitLen() + 7) / 8
	h := (n + 1) / 2
	pad := func(x *big.Int, size int) []byte { return x.FillBytes(make([]byte, size)) }
	return marshal(rsaFile{
		D:        pad(k.D, n),
		DP:       pad(k.Precomputed.Dp, h),
		DQ:       pad(k.Precomputed.Dq, h),
		Exponent: big.NewInt(int64(k.E)).Bytes(),
		InverseQ: pad(k.Precomputed.Qinv, h),
		Modulus:  pad(k.N, n),
		P:        pad(k.Primes[0], h),
		Q:        pad(k.Primes[1], h),
	})
}

// DecodeKey reads an RSA parameters file with the real reader's rules: BOM allowed, the member
// names matched exactly, every parameter present, and the key consistent.
func DecodeKey(data []byte) (*rsa.PrivateKey, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimPrefix(data, BOM), &raw); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	get := func(name string) (*big.Int, error) {
		v, ok := raw[name] // exact: SerializationInfo.GetValue is case-sensitive
		if !ok {
			return nil, fmt.Errorf("member %q not found", name)
		}
		var b []byte
		if err := json.Unmarshal(v, &b); err != nil || len(b) == 0 {
			return nil, fmt.Errorf("member %q is not a base64 byte array", name)
		}
		return new(big.Int).SetBytes(b), nil
	}
	vals := map[string]*big.Int{}
	for _, name := range []string{"d", "dp", "dq", "exponent", "inverseQ", "modulus", "p", "q"} {
		v, err := get(name)
		if err != nil {
			return nil, err
		}
		vals[name] = v
	}
	if !vals["exponent"].IsInt64() || vals["exponent"].Int64() > 1<<31-1 {
		return nil, errors.New("exponent out of range")
	}
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: vals["modulus"], E: int(vals["exponent"].Int64())},
		D:         vals["d"],
		Primes:    []*big.Int{vals["p"], vals["q"]},
	}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	k.Precompute()
	return k, nil
}

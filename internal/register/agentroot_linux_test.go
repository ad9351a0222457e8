//go:build linux

package register_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/register"
)

func testCA(t *testing.T) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "operator CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestPreparePlantedRootFiles plants every file a job could use to redirect the listener (an
// .env with a proxy and certificate checks off, .proxy, .certificates skipping validation, .path,
// .options, a symlinked .proxybypass, a hard-linked .proxycredentials) and checks that Prepare
// removes them, names them, leaves the registration alone, and writes its own.
func TestPreparePlantedRootFiles(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	plant := map[string]string{
		".env":          "VSTS_HTTP_PROXY=http://evil:8080\nVSTS_AGENT_INPUT_SSLSKIPCERTVALIDATION=true\n",
		".path":         "/tmp/evil:/usr/bin",
		".proxy":        "http://evil:8080",
		".certificates": `{"skipServerCertValidation":true}`,
		".options":      `{}`,
		".agent":        `{"agentId":1}`, // registration: not Prepare's business
	}
	for n, c := range plant {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(dir, ".proxybypass")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(dir, ".proxycredentials")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "_diag"), 0o755); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	ca := testCA(t)
	if err := os.WriteFile(caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	bundle, err := register.CABundle(caFile)
	if err != nil {
		t.Fatal(err)
	}
	d := openDir(t, dir)
	own := register.RootFiles{ProxyURL: "http://user:pw@proxy.corp:3128", CABundle: bundle}
	foreign, err := d.Prepare(own, owner())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(foreign, ","); got != ".certificates,.env,.options,.path,.proxy,.proxybypass,.proxycredentials" {
		t.Errorf("reported foreign files %q", got)
	}
	for _, n := range []string{".env", ".path", ".options", ".proxybypass", ".proxycredentials"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			t.Errorf("%s survived", n)
		}
	}
	if b, _ := os.ReadFile(outside); string(b) != "keep" {
		t.Errorf("the file behind a planted link changed: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ".agent")); string(b) != `{"agentId":1}` {
		t.Errorf(".agent touched: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ".proxy")); string(b) != "http://proxy.corp:3128" {
		t.Errorf(".proxy = %q; want the entrypoint's proxy without its password", b)
	}
	var certs map[string]any
	readJSON(t, filepath.Join(dir, ".certificates"), &certs)
	if certs["skipServerCertValidation"] != false || certs["caCert"] != filepath.Join(dir, register.FileCABundle) {
		t.Errorf(".certificates = %v", certs)
	}
	b, err := os.ReadFile(filepath.Join(dir, register.FileCABundle))
	if err != nil || !bytes.Contains(b, ca) {
		t.Errorf("the CA bundle lacks the operator's CA: %v", err)
	}
	if sys, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil && !bytes.HasPrefix(b, sys) {
		t.Error("the CA bundle lacks the system's roots")
	}
	for _, n := range []string{".proxy", ".certificates", register.FileCABundle} {
		st, _ := os.Lstat(filepath.Join(dir, n))
		o := owner()
		if st.Mode().Perm() != o.Mode || (o.UID >= 0 && int(st.Sys().(*syscall.Stat_t).Gid) != o.GID) {
			t.Errorf("%s: %v", n, st.Mode())
		}
	}

	// A second start: only the entrypoint's own files are there, and none is reported.
	foreign, err = d.Prepare(own, owner())
	if err != nil || len(foreign) != 0 {
		t.Errorf("second Prepare: foreign %v, err %v", foreign, err)
	}
	// Without a proxy or CA, none of those files remain.
	if _, err := d.Prepare(register.RootFiles{}, owner()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, ",") != ".agent,_diag" {
		t.Errorf("left in the agent root: %v", left)
	}
}

func TestCABundleRejectsNonPEM(t *testing.T) {
	f := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(f, []byte("not a certificate"), 0o644)
	if _, err := register.CABundle(f); err == nil || !strings.Contains(err.Error(), "AZP_CA_CERT_FILE") {
		t.Errorf("err = %v", err)
	}
}

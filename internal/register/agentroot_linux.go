//go:build linux

package register

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// FileCABundle is the CA bundle `.certificates` points at. Its name starts with ".certificates",
// so Prepare removes and rewrites it like the settings file itself.
const FileCABundle = ".certificates-ca-bundle.pem"

// RootFiles are the listener-read files the entrypoint writes itself before every listener start.
type RootFiles struct {
	// ProxyURL goes into `.proxy` (its first line is the proxy address: VstsAgentWebProxy.
	// LoadProxySetting); user information is stripped, the file never holds a password. "" means
	// no `.proxy`, and the listener falls back to VSTS_HTTP_PROXY / http_proxy.
	ProxyURL string
	// CABundle, when set, is written to FileCABundle and named by `.certificates` (caCert), which
	// the listener checks exists (AgentCertificateManager.LoadCertificateSettings) and hands to git
	// as http.sslcainfo (GitSourceProvider), where it replaces the system bundle; hence the bundle
	// holds the system's roots and the operator's CA.
	CABundle []byte
}

// planted reports whether name is one of the files in the agent root that change how the
// listener starts, connects or what it trusts, which the entrypoint owns:
//   - `.env` is loaded into the listener's environment at every start, before the
//     VSTS_AGENT_INPUT_* variables are read (src/Agent.Listener/Program.cs, MainAsync);
//   - `.path` is env.sh's PATH; `.options` is AgentRuntimeOptions (ConfigurationStore);
//   - `.proxy`, `.proxycredentials`, `.proxybypass` (VstsAgentWebProxy);
//   - `.certificates` (AgentCertificateManager), which can turn off server certificate checks.
func planted(name string) bool {
	switch name {
	case ".env", ".path", ".options":
		return true
	}
	return strings.HasPrefix(name, ".proxy") || strings.HasPrefix(name, ".certificates")
}

// Prepare is called before every listener start: it removes from the agent root every `.env`,
// `.path`, `.options`, `.proxy*` and `.certificates*` (none of them was written by anyone but the
// entrypoint, which writes its own again next), then writes `.proxy` and `.certificates` from the
// entrypoint's settings. It returns the names it removed that it did not write (for a warning).
// Links are removed, never followed; a directory of such a name is left (the listener's
// File.Exists is false for it) and reported.
func (d *Dir) Prepare(own RootFiles, o Owner) (foreign []string, err error) {
	names, err := d.names()
	if err != nil {
		return nil, err
	}
	ours := map[string]bool{}
	var errs []error
	for _, n := range names {
		if !planted(n) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("%s/%s: %w", d.path, n, err))
			}
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			foreign = append(foreign, n+"/ (directory, left: the listener ignores it)")
			continue
		}
		// Ours: a regular file with our owner and mode, written by Prepare (or Register) before.
		if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1 && int(st.Uid) == os.Geteuid() && os.FileMode(st.Mode&0o777) == o.Mode.Perm() &&
			(n == ".proxy" || n == ".certificates" || n == FileCABundle) {
			ours[n] = true
		} else {
			foreign = append(foreign, n)
		}
		if err := d.Remove(n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return foreign, err
	}
	if own.ProxyURL != "" {
		u, err := url.Parse(own.ProxyURL)
		if err != nil || u.Host == "" {
			return foreign, fmt.Errorf("proxy URL %q is not a URL", redactUser(own.ProxyURL))
		}
		u.User = nil
		if err := d.WriteFile(".proxy", []byte(u.String()), o); err != nil {
			return foreign, err
		}
	}
	if len(own.CABundle) > 0 {
		if err := d.WriteFile(FileCABundle, own.CABundle, o); err != nil {
			return foreign, err
		}
		// AgentCertificateSetting members are [DataMember] without EmitDefaultValue=false: every
		// one is written, camelCase.
		data, err := marshal(struct {
			SkipServerCertValidation    bool    `json:"skipServerCertValidation"`
			CACert                      string  `json:"caCert"`
			ClientCert                  *string `json:"clientCert"`
			ClientCertPrivatekey        *string `json:"clientCertPrivatekey"`
			ClientCertArchive           *string `json:"clientCertArchive"`
			ClientCertPasswordLookupKey *string `json:"clientCertPasswordLookupKey"`
		}{CACert: filepath.Join(d.path, FileCABundle)})
		if err != nil {
			return foreign, err
		}
		if err := d.WriteFile(".certificates", data, o); err != nil {
			return foreign, err
		}
	}
	sort.Strings(foreign)
	return foreign, d.Sync()
}

func redactUser(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		u.User = nil
		return u.String()
	}
	return "(unparsable)"
}

// names lists the directory's entries through its descriptor.
func (d *Dir) names() ([]string, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.path, err)
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.path, err)
	}
	return names, nil
}

// systemBundles are where distributions keep the system's CA bundle (the list Go's crypto/x509
// reads, root_linux.go).
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/tls/cacert.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// CABundle combines the system's CA bundle with the operator's CA file (AZP_CA_CERT_FILE), which
// must hold at least one PEM certificate. A missing system bundle is not an error (the operator's
// CA alone is then the bundle).
func CABundle(extraPath string) ([]byte, error) {
	extra, err := os.ReadFile(extraPath)
	if err != nil {
		return nil, fmt.Errorf("AZP_CA_CERT_FILE = %s: %w", extraPath, err)
	}
	n := 0
	for rest := extra; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return nil, fmt.Errorf("AZP_CA_CERT_FILE = %s: a certificate does not parse: %w", extraPath, err)
			}
			n++
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("AZP_CA_CERT_FILE = %s holds no PEM certificate; give a PEM file with the CA certificate(s)", extraPath)
	}
	var out bytes.Buffer
	for _, p := range systemBundles {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			out.Write(b)
			if !bytes.HasSuffix(b, []byte("\n")) {
				out.WriteByte('\n')
			}
			break
		}
	}
	out.Write(extra)
	if !bytes.HasSuffix(extra, []byte("\n")) {
		out.WriteByte('\n')
	}
	return out.Bytes(), nil
}

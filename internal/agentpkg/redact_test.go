package agentpkg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/azp-entrypoint/azp-entrypoint/internal/redact"
)

// TestDownloadURLSecretsNeverLogged installs from a URL with user-info and a SAS-style query, once
// failing (404) and once succeeding, and asserts that neither the password nor the signature
// reaches a log record or the error text.
func TestDownloadURLSecretsNeverLogged(t *testing.T) {
	const password, sig = "S3cretPw", "SASSECRET"
	s := newServer(t)
	pkg := buildTarGz(t, agentEntries("4.261.0"))
	good := s.add("x.tar.gz", pkg)
	withSecrets := func(u string) string {
		return strings.Replace(u, "http://", "http://user:"+password+"@", 1) + "?sig=" + sig + "&se=2099#frag" + sig
	}
	// shown is how logs and errors show withSecrets(u): redact.URL masks the user-info and cuts the query.
	shown := func(u string) string { return strings.Replace(u, "http://", "http://***@", 1) + "?…" }
	check := func(t *testing.T, logs string, err error) {
		t.Helper()
		texts := []string{logs}
		if err != nil {
			texts = append(texts, err.Error(), fmt.Sprintf("%+v", err))
		}
		for _, text := range texts {
			for _, secret := range []string{password, sig} {
				if strings.Contains(text, secret) {
					t.Errorf("the text shows %q:\n%s", secret, text)
				}
			}
		}
	}
	newOpts := func(t *testing.T, dir string) (Options, *bytes.Buffer) {
		o, _ := testOptions(t, dir)
		var buf bytes.Buffer
		o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Version = "4.261.0"
		o.ProgressInterval = time.Millisecond
		return o, &buf
	}

	t.Run("404", func(t *testing.T) {
		o, buf := newOpts(t, t.TempDir())
		_, err := Install(context.Background(), o, withSecrets(s.srv.URL+"/missing.tar.gz"), "")
		var se *HTTPStatusError
		if !errors.As(err, &se) || se.Status != http.StatusNotFound {
			t.Fatalf("want a 404, got %v", err)
		}
		if !strings.Contains(err.Error(), shown(s.srv.URL+"/missing.tar.gz")) {
			t.Errorf("the error should name the redacted URL: %v", err)
		}
		check(t, buf.String(), err)
		if !strings.Contains(buf.String(), "missing.tar.gz") {
			t.Errorf("the log should still name the URL:\n%s", buf)
		}
		reqs := s.requests()
		if r := reqs[len(reqs)-1]; r.URL.Query().Get("sig") != sig {
			t.Errorf("the request must carry the query: %v", r.URL)
		}
	})
	t.Run("success", func(t *testing.T) {
		o, buf := newOpts(t, t.TempDir())
		if _, err := Install(context.Background(), o, withSecrets(good), sha(pkg)); err != nil {
			t.Fatal(err)
		}
		check(t, buf.String(), nil)
		if !strings.Contains(buf.String(), "url="+shown(good)) {
			t.Errorf("the log should name the redacted URL:\n%s", buf)
		}
	})
	t.Run("no hash", func(t *testing.T) {
		o, buf := newOpts(t, t.TempDir())
		if _, err := Install(context.Background(), o, withSecrets(good), ""); err != nil {
			t.Fatal(err)
		}
		check(t, buf.String(), nil)
	})
	t.Run("server downloadUrl", func(t *testing.T) {
		for _, u := range []string{withSecrets(s.srv.URL + "/gone.tar.gz"), withSecrets(good)} {
			o, buf := newOpts(t, t.TempDir())
			o.Version = ""
			o.CacheDir = t.TempDir()
			_, err := Ensure(context.Background(), o, &fakeLister{pkgs: []Package{{Version: "4.261.0", URL: u, SHA256: sha(pkg)}}})
			if strings.Contains(u, "gone") == (err == nil) {
				t.Errorf("Ensure from %s: %v", redact.URL(u), err)
			}
			check(t, buf.String(), err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		o, buf := newOpts(t, t.TempDir())
		o.Retries = 1
		_, err := Install(context.Background(), o, "http://user:"+password+"@127.0.0.1:1/x.tar.gz?sig="+sig, "")
		if err == nil {
			t.Fatal("installed from a closed port")
		}
		check(t, buf.String(), err)
	})
	t.Run("not a URL", func(t *testing.T) {
		o, buf := newOpts(t, t.TempDir())
		_, err := Install(context.Background(), o, "http://user:"+password+"/x@127.0.0.1:bad/x.tar.gz?sig="+sig, "")
		if err == nil {
			t.Fatal("accepted")
		}
		check(t, buf.String(), err)
	})
}

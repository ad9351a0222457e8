// Package secrets obtains the credential the entrypoint uses for its own Azure DevOps REST calls,
// for configuring and for removing the agent: a personal access token (AZP_TOKEN, AZP_TOKEN_FILE,
// or the Secrets Manager secret) or a service principal (Entra ID client credentials).
//
// A Provider goes back to the credential's source on every call: the token file is read again and
// the secret fetched again, so a rotated credential is used at the next later use (deregistration,
// reconfiguration, prune). Every value it obtains is registered with the log masker before it is
// returned. This package never logs a secret value and never writes one to disk.
package secrets

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
)

// AzureDevOpsScope is the Entra ID scope of the Azure DevOps resource.
const AzureDevOpsScope = "499b84ac-1321-427f-aa17-267ca6975798/.default"

// Credential is exactly one kind of credential: a PAT or a service principal.
type Credential struct {
	PAT                              string
	ClientID, ClientSecret, TenantID string
	// Source says where the credential came from, for logs (never the value).
	Source string
}

// IsServicePrincipal reports whether the credential is a service principal.
func (c Credential) IsServicePrincipal() bool { return c.PAT == "" && c.ClientID != "" }

// ProviderOptions configure a Provider.
type ProviderOptions struct {
	Masker     *logging.Masker
	Logger     *slog.Logger
	HTTPClient *http.Client // Entra and Secrets Manager traffic; nil: defaults
	AWSConfig  *aws.Config  // optional override of the default AWS configuration
	// SecretsManager overrides the Secrets Manager client (tests, or sharing one with Resolve).
	SecretsManager *SecretsManager
}

// Provider obtains the credential described by the settings, fresh on every call.
type Provider struct {
	s *config.Settings
	o ProviderOptions

	smMu sync.Mutex
	sm   *SecretsManager

	entra entraCache
}

// NewProvider prepares a provider; it performs no I/O.
func NewProvider(ctx context.Context, s *config.Settings, o ProviderOptions) (*Provider, error) {
	if s == nil {
		return nil, exit.Config(errors.New("credentials: no settings"))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{s: s, o: o, sm: o.SecretsManager}
	p.entra.hc = o.HTTPClient
	return p, nil
}

func (p *Provider) secretsManager(ctx context.Context) (*SecretsManager, error) {
	p.smMu.Lock()
	defer p.smMu.Unlock()
	if p.sm != nil {
		return p.sm, nil
	}
	sm, err := NewSecretsManager(ctx, SecretsManagerOptions{AWSConfig: p.o.AWSConfig, HTTPClient: p.o.HTTPClient, Masker: p.o.Masker, Logger: p.o.Logger})
	if err != nil {
		return nil, err
	}
	p.sm = sm
	return sm, nil
}

// secretValues fetches the secret again and parses it.
func (p *Provider) secretValues(ctx context.Context) (map[string]string, error) {
	sm, err := p.secretsManager(ctx)
	if err != nil {
		return nil, err
	}
	text, err := sm.Fetch(ctx, p.s.SecretID)
	if err != nil {
		return nil, err
	}
	vals, _, err := config.ParseSecret(text)
	if err != nil {
		return nil, fmt.Errorf("AZP_SECRET_ID = %q: %w", p.s.SecretID, err)
	}
	return vals, nil
}

// Credential returns the credential, read again from its source.
func (p *Provider) Credential(ctx context.Context) (Credential, error) {
	s := p.s
	var c Credential
	switch s.TokenSource {
	case config.TokenValue:
		c = Credential{PAT: strings.TrimSpace(s.Token), Source: "AZP_TOKEN"}
		if s.Sources["AZP_TOKEN"] == "flag" {
			c.Source = "--token"
		}
		if c.PAT == "" {
			return Credential{}, exit.Config(errors.New("AZP_TOKEN: empty or whitespace (set the personal access token)"))
		}
	case config.TokenFile:
		tok, err := readTokenFile(ctx, s.TokenFile)
		if err != nil {
			return Credential{}, err
		}
		c = Credential{PAT: tok, Source: "AZP_TOKEN_FILE"}
	case config.TokenFromSecret:
		vals, err := p.secretValues(ctx)
		if err != nil {
			return Credential{}, err
		}
		tok := vals["AZP_TOKEN"]
		if tok == "" {
			return Credential{}, exit.Config(fmt.Errorf("AZP_SECRET_ID = %q: the secret no longer holds a token (store the PAT as the plain secret value or under the key AZP_TOKEN)", s.SecretID))
		}
		c = Credential{PAT: tok, Source: "the secret's AZP_TOKEN"}
	default:
		c = Credential{ClientID: s.ClientID, ClientSecret: s.ClientSecret, TenantID: s.TenantID, Source: "service principal"}
		if s.SPFromSecret {
			vals, err := p.secretValues(ctx)
			if err != nil {
				return Credential{}, err
			}
			for _, f := range []struct {
				key string
				dst *string
			}{{"AZP_CLIENTID", &c.ClientID}, {"AZP_CLIENTSECRET", &c.ClientSecret}, {"AZP_TENANTID", &c.TenantID}} {
				if s.Sources[f.key] != "secret" {
					continue
				}
				v := vals[f.key]
				if v == "" {
					return Credential{}, exit.Config(fmt.Errorf("AZP_SECRET_ID = %q: the secret no longer holds %s (it did at start-up)", s.SecretID, f.key))
				}
				*f.dst = v
			}
		}
		if c.ClientID == "" || c.ClientSecret == "" || c.TenantID == "" {
			return Credential{}, exit.Config(errors.New("credentials: incomplete service principal (AZP_CLIENTID, AZP_CLIENTSECRET and AZP_TENANTID are all required)"))
		}
	}
	p.o.Masker.Add(c.PAT, c.ClientSecret)
	return c, nil
}

// maxTokenFile bounds what is read from AZP_TOKEN_FILE; a PAT is 52 characters.
const maxTokenFile = 64 << 10

func readTokenFile(ctx context.Context, path string) (string, error) {
	// A writer that truncates and rewrites the file leaves it empty for a moment: look again
	// briefly before calling it empty.
	for attempt := 0; ; attempt++ {
		f, err := os.Open(path)
		if err != nil {
			return "", exit.Config(fmt.Errorf("AZP_TOKEN_FILE = %q: cannot read the token file: %w (mount the file there or fix the path)", path, errors.Unwrap(err)))
		}
		b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
		f.Close()
		if err != nil {
			return "", exit.Config(fmt.Errorf("AZP_TOKEN_FILE = %q: cannot read the token file: %w", path, err))
		}
		if len(b) > maxTokenFile {
			return "", exit.Config(fmt.Errorf("AZP_TOKEN_FILE = %q: the file is larger than 64 KiB; it must hold only the token", path))
		}
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
		if attempt >= 3 {
			return "", exit.Config(fmt.Errorf("AZP_TOKEN_FILE = %q: the file is empty (write the personal access token into it)", path))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// BasicAuth is the Authorization header value for a PAT.
func BasicAuth(pat string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+pat))
}

// Authorization returns the Authorization header value for the credential as it is now:
// "Basic ..." for a PAT, "Bearer <Entra access token>" for a service principal.
func (p *Provider) Authorization(ctx context.Context) (string, error) {
	c, err := p.Credential(ctx)
	if err != nil {
		return "", err
	}
	return p.header(ctx, c)
}

func (p *Provider) header(ctx context.Context, c Credential) (string, error) {
	if !c.IsServicePrincipal() {
		return BasicAuth(c.PAT), nil
	}
	tok, _, err := p.entra.token(ctx, c, p.s.AuthorityHost)
	if err != nil {
		return "", err
	}
	p.o.Masker.Add(tok)
	return "Bearer " + tok, nil
}

// Snapshot fetches the credential once and returns an Authorization function that reuses it, for
// a batch of calls that should not fetch the secret once per request (prune). A service
// principal's access token is still renewed near its expiry.
func (p *Provider) Snapshot(ctx context.Context) (func(context.Context) (string, error), error) {
	c, err := p.Credential(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := p.header(ctx, c); err != nil {
		return nil, err
	}
	return func(ctx context.Context) (string, error) { return p.header(ctx, c) }, nil
}

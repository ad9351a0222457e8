package secrets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
)

// knownAuthorities are Microsoft's Entra ID hosts, for which instance discovery works. Any other
// authority host (Azure Stack, ADFS, a test endpoint) is used as given.
var knownAuthorities = map[string]bool{
	"login.microsoftonline.com": true, "login.microsoftonline.us": true,
	"login.chinacloudapi.cn": true, "login.partner.microsoftonline.cn": true,
}

// entraCache keeps one azidentity credential per (authority, tenant, client, secret), so its
// in-memory token cache serves repeated calls until the token nears expiry; a rotated client
// secret gets a credential of its own.
type entraCache struct {
	hc    *http.Client
	mu    sync.Mutex
	creds map[string]*azidentity.ClientSecretCredential
}

func (e *entraCache) token(ctx context.Context, c Credential, authorityHost string) (string, time.Time, error) {
	cred, err := e.credential(c, authorityHost)
	if err != nil {
		return "", time.Time{}, err
	}
	return getToken(ctx, cred, c, authorityHost)
}

func (e *entraCache) credential(c Credential, authorityHost string) (*azidentity.ClientSecretCredential, error) {
	h := sha256.Sum256([]byte(authorityHost + "\x00" + c.TenantID + "\x00" + c.ClientID + "\x00" + c.ClientSecret))
	key := hex.EncodeToString(h[:])
	e.mu.Lock()
	defer e.mu.Unlock()
	if cred, ok := e.creds[key]; ok {
		return cred, nil
	}
	cred, err := newCredential(c, authorityHost, e.hc)
	if err != nil {
		return nil, err
	}
	if e.creds == nil {
		e.creds = map[string]*azidentity.ClientSecretCredential{}
	}
	e.creds[key] = cred
	return cred, nil
}

func newCredential(c Credential, authorityHost string, hc *http.Client) (*azidentity.ClientSecretCredential, error) {
	opts := &azidentity.ClientSecretCredentialOptions{}
	if hc != nil {
		opts.ClientOptions.Transport = hc
	}
	if authorityHost != "" {
		u, err := url.Parse(authorityHost)
		if err != nil || u.Host == "" {
			return nil, exit.Config(fmt.Errorf("AZURE_AUTHORITY_HOST = %q: not a URL (e.g. https://login.microsoftonline.us/)", authorityHost))
		}
		if u.Scheme != "https" {
			return nil, exit.Config(fmt.Errorf("AZURE_AUTHORITY_HOST = %q: Entra ID authority hosts must use https", authorityHost))
		}
		opts.ClientOptions.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: authorityHost}
		opts.DisableInstanceDiscovery = !knownAuthorities[strings.ToLower(u.Hostname())]
	}
	cred, err := azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret, opts)
	if err != nil {
		return nil, exit.Config(fmt.Errorf("service principal (AZP_TENANTID = %q, AZP_CLIENTID = %q): %w", c.TenantID, c.ClientID, err))
	}
	return cred, nil
}

var aadstsRE = regexp.MustCompile(`AADSTS\d+:[^."\r\n]*`)

func getToken(ctx context.Context, cred azcore.TokenCredential, c Credential, authorityHost string) (string, time.Time, error) {
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{AzureDevOpsScope}})
	if err == nil {
		return tok.Token, tok.ExpiresOn, nil
	}
	host := authorityHost
	if host == "" {
		host = cloud.AzurePublic.ActiveDirectoryAuthorityHost
	}
	who := fmt.Sprintf("service principal AZP_CLIENTID = %q in tenant AZP_TENANTID = %q", c.ClientID, c.TenantID)
	if ctx.Err() != nil {
		return "", time.Time{}, exit.Runtime(fmt.Errorf("get an Entra ID token for %s: %w", who, ctx.Err()))
	}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) && afe.RawResponse != nil && afe.RawResponse.StatusCode >= 400 && afe.RawResponse.StatusCode < 500 && afe.RawResponse.StatusCode != http.StatusTooManyRequests {
		reason := aadstsRE.FindString(err.Error())
		if reason == "" {
			reason = fmt.Sprintf("HTTP %d", afe.RawResponse.StatusCode)
		}
		fix := "check AZP_CLIENTID, AZP_CLIENTSECRET and AZP_TENANTID"
		switch {
		case strings.HasPrefix(reason, "AADSTS7000215"), strings.HasPrefix(reason, "AADSTS7000222"):
			fix = "the client secret is wrong or expired: renew AZP_CLIENTSECRET (the secret's value, not its ID)"
		case strings.HasPrefix(reason, "AADSTS700016"):
			fix = "no such application in the tenant: check AZP_CLIENTID and AZP_TENANTID"
		case strings.HasPrefix(reason, "AADSTS90002"):
			fix = "no such tenant: check AZP_TENANTID"
		}
		return "", time.Time{}, exit.Auth(fmt.Errorf("the Entra ID authority %s rejected the %s: %s (%s)", host, who, reason, fix))
	}
	return "", time.Time{}, exit.Runtime(fmt.Errorf("get an Entra ID token for %s from %s: %w (check the network route to the authority host and AZURE_AUTHORITY_HOST)", who, host, err))
}

// EntraToken obtains an Azure DevOps access token for a service principal (no caching).
func EntraToken(ctx context.Context, c Credential, authorityHost string, hc *http.Client) (string, time.Time, error) {
	cred, err := newCredential(c, authorityHost, hc)
	if err != nil {
		return "", time.Time{}, err
	}
	return getToken(ctx, cred, c, authorityHost)
}

package secrets_test

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs/ecstest"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets/entratest"
	"github.com/azp-entrypoint/azp-entrypoint/internal/secrets/smtest"
)

const orgURL = "https://dev.azure.com/acme"

func envOf(m map[string]string) config.Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// awsEnv points the SDK's default configuration at the fake and isolates it from the machine.
func awsEnv(t *testing.T, sm *smtest.Server, static bool) {
	t.Helper()
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for k, v := range sm.Env() {
		if !static && (k == "AWS_ACCESS_KEY_ID" || k == "AWS_SECRET_ACCESS_KEY") {
			continue
		}
		t.Setenv(k, v)
	}
}

func resolve(t *testing.T, env map[string]string, fetch config.SecretFetcher) (*config.Settings, error) {
	t.Helper()
	if _, ok := env["AZP_URL"]; !ok {
		env["AZP_URL"] = orgURL
	}
	return config.Resolve(context.Background(), config.Options{Env: envOf(env), Secret: fetch})
}

func TestTokenFileIsReadAgainAtEveryUse(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "token")
	os.WriteFile(path, []byte("  first-token-value\n"), 0o600)
	s, err := resolve(t, map[string]string{"AZP_TOKEN_FILE": path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := logging.NewMasker()
	p, err := secrets.NewProvider(ctx, s, secrets.ProviderOptions{Masker: m})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Credential(ctx)
	if err != nil || c.PAT != "first-token-value" || c.Source != "AZP_TOKEN_FILE" {
		t.Fatalf("got %+v, %v", c, err)
	}
	// Rotation: the next use sees the new file.
	os.WriteFile(path, []byte("second-token-value\n"), 0o600)
	h, err := p.Authorization(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte(":second-token-value")); h != want {
		t.Fatalf("header %q, want %q", h, want)
	}
	if !m.Contains("first-token-value") || !m.Contains("second-token-value") || !m.Contains(h) {
		t.Fatal("token values not registered with the masker")
	}

	os.WriteFile(path, []byte(" \n"), 0o600)
	_, err = p.Credential(ctx)
	if exit.Code(err) != exit.Usage || !strings.Contains(err.Error(), "AZP_TOKEN_FILE") || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v (code %d)", err, exit.Code(err))
	}
	os.Remove(path)
	_, err = p.Credential(ctx)
	if exit.Code(err) != exit.Usage || !strings.Contains(err.Error(), path) {
		t.Fatalf("missing file: %v (code %d)", err, exit.Code(err))
	}
}

func TestSecretsManagerPlainSecretRotated(t *testing.T) {
	ctx := context.Background()
	sm := smtest.New()
	defer sm.Close()
	awsEnv(t, sm, true)
	sm.PutSecret("azp/token", "plain-token-one")

	m := logging.NewMasker()
	fetch := secrets.FetchSecretWith(secrets.SecretsManagerOptions{Masker: m})
	s, err := resolve(t, map[string]string{"AZP_SECRET_ID": "azp/token"}, fetch)
	if err != nil {
		t.Fatal(err)
	}
	if s.TokenSource != config.TokenFromSecret || s.Token != "plain-token-one" {
		t.Fatalf("settings: %v %q", s.TokenSource, s.Token)
	}
	p, _ := secrets.NewProvider(ctx, s, secrets.ProviderOptions{Masker: m})
	sm.PutSecret("azp/token", "plain-token-two")
	c, err := p.Credential(ctx)
	if err != nil || c.PAT != "plain-token-two" {
		t.Fatalf("after rotation: %+v %v", c, err)
	}
	if !m.Contains("plain-token-one") || !m.Contains("plain-token-two") {
		t.Fatal("secret values not masked")
	}
	calls := sm.Calls()
	if len(calls) != 2 || calls[0].AccessKeyID != smtest.AccessKeyID || calls[1].Status != 200 {
		t.Fatalf("calls: %+v", calls)
	}
}

func TestSecretsManagerByARNWithoutRegion(t *testing.T) {
	sm := smtest.New()
	defer sm.Close()
	awsEnv(t, sm, true)
	os.Unsetenv("AWS_REGION")
	sm.PutSecret("azp/arn", "arn-token")
	v, err := secrets.FetchSecretWith(secrets.SecretsManagerOptions{})(context.Background(), smtest.ARN("azp/arn"))
	if err != nil || v != "arn-token" {
		t.Fatalf("%q %v", v, err)
	}
	_, err = secrets.FetchSecretWith(secrets.SecretsManagerOptions{})(context.Background(), "azp/arn")
	if exit.Code(err) != exit.Usage || !strings.Contains(err.Error(), "AWS_REGION") {
		t.Fatalf("no region: %v", err)
	}
}

func TestSecretsManagerErrors(t *testing.T) {
	sm := smtest.New()
	defer sm.Close()
	awsEnv(t, sm, true)
	sm.PutSecret("azp/json", `{"AZP_TOKEN":"json-token-value","AZP_POOL":"Linux","Colour":"blue"}`)
	sm.Deny("azp/denied", true)
	fetch := secrets.FetchSecretWith(secrets.SecretsManagerOptions{MaxBackoff: 50 * time.Millisecond})

	t.Run("unknown keys warn", func(t *testing.T) {
		s, err := resolve(t, map[string]string{"AZP_SECRET_ID": "azp/json"}, fetch)
		if err != nil {
			t.Fatal(err)
		}
		if s.Pool != "Linux" || s.Token != "json-token-value" || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], `"Colour"`) {
			t.Fatalf("pool %q token %q warnings %q", s.Pool, s.Token, s.Warnings)
		}
	})
	t.Run("not found", func(t *testing.T) {
		_, err := resolve(t, map[string]string{"AZP_SECRET_ID": "azp/missing"}, fetch)
		if exit.Code(err) != exit.Usage || !strings.Contains(err.Error(), "AZP_SECRET_ID") || !strings.Contains(err.Error(), "azp/missing") || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("%v (code %d)", err, exit.Code(err))
		}
	})
	t.Run("access denied", func(t *testing.T) {
		_, err := resolve(t, map[string]string{"AZP_SECRET_ID": "azp/denied"}, fetch)
		if exit.Code(err) != exit.Denied || !strings.Contains(err.Error(), "azp/denied") || !strings.Contains(err.Error(), "AccessDeniedException") {
			t.Fatalf("%v (code %d)", err, exit.Code(err))
		}
	})
	t.Run("throttling then success", func(t *testing.T) {
		before := len(sm.Calls())
		sm.Throttle(2)
		v, err := fetch(context.Background(), "azp/json")
		if err != nil || !strings.Contains(v, "json-token-value") {
			t.Fatalf("%q %v", v, err)
		}
		calls := sm.Calls()[before:]
		if len(calls) != 3 || calls[0].Error != "ThrottlingException" || calls[1].Error != "ThrottlingException" || calls[2].Status != 200 {
			t.Fatalf("calls: %+v", calls)
		}
	})
	t.Run("throttled for good", func(t *testing.T) {
		sm.Throttle(100)
		defer sm.Throttle(0)
		f := secrets.FetchSecretWith(secrets.SecretsManagerOptions{MaxAttempts: 3, MaxBackoff: 10 * time.Millisecond})
		_, err := f(context.Background(), "azp/json")
		if exit.Code(err) != exit.Failure || !strings.Contains(err.Error(), "throttl") {
			t.Fatalf("%v (code %d)", err, exit.Code(err))
		}
	})
	t.Run("wrong secret key fails the signature check", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-right-secret-key")
		_, err := secrets.FetchSecretWith(secrets.SecretsManagerOptions{})(context.Background(), "azp/json")
		if exit.Code(err) != exit.Denied || !strings.Contains(err.Error(), "InvalidSignatureException") {
			t.Fatalf("%v (code %d)", err, exit.Code(err))
		}
	})
}

// The standard credential chain on Fargate: the ECS container-credentials endpoint.
func TestSecretsManagerWithContainerCredentials(t *testing.T) {
	sm := smtest.New()
	defer sm.Close()
	awsEnv(t, sm, false)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", sm.ContainerCredentialsURL())
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", smtest.ContainerAuthToken)
	sm.PutSecret("azp/ecs", "ecs-token-value")
	v, err := secrets.FetchSecretWith(secrets.SecretsManagerOptions{})(context.Background(), "azp/ecs")
	if err != nil || v != "ecs-token-value" {
		t.Fatalf("%q %v", v, err)
	}
	if calls := sm.Calls(); calls[len(calls)-1].AccessKeyID != smtest.ContainerAccessKeyID || sm.ContainerCredentialCalls() == 0 {
		t.Fatalf("not signed with the container credentials: %+v", calls)
	}

	// Without any credentials the error says so and is an authentication failure.
	t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong")
	_, err = secrets.FetchSecretWith(secrets.SecretsManagerOptions{MaxAttempts: 1})(context.Background(), "azp/ecs")
	if exit.Code(err) != exit.Denied || !strings.Contains(err.Error(), "AWS credentials") {
		t.Fatalf("%v (code %d)", err, exit.Code(err))
	}
}

func TestServicePrincipal(t *testing.T) {
	ctx := context.Background()
	en := entratest.New()
	defer en.Close()
	en.AddApp("tenant-1", "client-1", "client-secret-one")

	s, err := resolve(t, map[string]string{"AZP_CLIENTID": "client-1", "AZP_CLIENTSECRET": "client-secret-one",
		"AZP_TENANTID": "tenant-1", "AZURE_AUTHORITY_HOST": en.AuthorityHost()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := logging.NewMasker()
	p, _ := secrets.NewProvider(ctx, s, secrets.ProviderOptions{Masker: m, HTTPClient: en.Client()})
	h, err := p.Authorization(ctx)
	if err != nil {
		t.Fatal(err)
	}
	issued := en.Issued()
	if len(issued) != 1 || h != "Bearer "+issued[0].Token || !m.Contains(issued[0].Token) || !m.Contains("client-secret-one") {
		t.Fatalf("header %q issued %+v", h, issued)
	}
	// Cached until near expiry.
	if h2, _ := p.Authorization(ctx); h2 != h || en.TokenRequests() != 1 {
		t.Fatalf("token not cached: %d requests", en.TokenRequests())
	}

	t.Run("wrong secret", func(t *testing.T) {
		s2 := *s
		s2.ClientSecret = "not-the-secret"
		p, _ := secrets.NewProvider(ctx, &s2, secrets.ProviderOptions{HTTPClient: en.Client()})
		_, err := p.Authorization(ctx)
		if exit.Code(err) != exit.Denied || !strings.Contains(err.Error(), "AADSTS7000215") || !strings.Contains(err.Error(), "AZP_CLIENTSECRET") || strings.Contains(err.Error(), "not-the-secret") {
			t.Fatalf("%v (code %d)", err, exit.Code(err))
		}
	})
	t.Run("unknown tenant", func(t *testing.T) {
		s2 := *s
		s2.TenantID = "tenant-2"
		p, _ := secrets.NewProvider(ctx, &s2, secrets.ProviderOptions{HTTPClient: en.Client()})
		_, err := p.Authorization(ctx)
		if exit.Code(err) != exit.Denied || !strings.Contains(err.Error(), "AZP_TENANTID") {
			t.Fatalf("%v (code %d)", err, exit.Code(err))
		}
	})
	t.Run("http authority host", func(t *testing.T) {
		s2 := *s
		s2.AuthorityHost = "http://127.0.0.1:1/"
		p, _ := secrets.NewProvider(ctx, &s2, secrets.ProviderOptions{})
		_, err := p.Authorization(ctx)
		if exit.Code(err) != exit.Usage || !strings.Contains(err.Error(), "AZURE_AUTHORITY_HOST") {
			t.Fatalf("%v (code %d)", err, exit.Code(err))
		}
	})
}

// A service principal whose secret lives in Secrets Manager: a rotated client secret is used at
// the next use.
func TestServicePrincipalFromSecretRotated(t *testing.T) {
	ctx := context.Background()
	sm := smtest.New()
	defer sm.Close()
	awsEnv(t, sm, true)
	en := entratest.New()
	defer en.Close()
	en.AddApp("tenant-1", "client-1", "sp-secret-one")
	sm.PutSecret("azp/sp", `{"AZP_CLIENTID":"client-1","AZP_CLIENTSECRET":"sp-secret-one","AZP_TENANTID":"tenant-1"}`)

	fetch := secrets.FetchSecretWith(secrets.SecretsManagerOptions{})
	s, err := resolve(t, map[string]string{"AZP_SECRET_ID": "azp/sp", "AZURE_AUTHORITY_HOST": en.AuthorityHost()}, fetch)
	if err != nil {
		t.Fatal(err)
	}
	m := logging.NewMasker()
	p, _ := secrets.NewProvider(ctx, s, secrets.ProviderOptions{Masker: m, HTTPClient: en.Client()})
	if _, err := p.Authorization(ctx); err != nil {
		t.Fatal(err)
	}
	en.AddApp("tenant-1", "client-1", "sp-secret-two")
	sm.PutSecret("azp/sp", `{"AZP_CLIENTID":"client-1","AZP_CLIENTSECRET":"sp-secret-two","AZP_TENANTID":"tenant-1"}`)
	c, err := p.Credential(ctx)
	if err != nil || c.ClientSecret != "sp-secret-two" || !c.IsServicePrincipal() {
		t.Fatalf("%+v %v", c.Source, err)
	}
	h, err := p.Authorization(ctx)
	if err != nil || en.TokenRequests() != 2 || !strings.HasPrefix(h, "Bearer entra.") {
		t.Fatalf("rotated secret not used: %v, %d token requests", err, en.TokenRequests())
	}
	if !m.Contains("sp-secret-two") {
		t.Fatal("rotated secret not masked")
	}

	// Snapshot: one fetch for a batch.
	before := len(sm.Calls())
	auth, err := p.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := auth(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(sm.Calls()) - before; n != 1 {
		t.Fatalf("snapshot fetched the secret %d times", n)
	}
}

// The same with helper F's ECS fake: the task role's credentials come from the ECS credentials
// endpoint exactly as on Fargate.
func TestSecretsManagerWithECSTaskRole(t *testing.T) {
	sm := smtest.New()
	defer sm.Close()
	awsEnv(t, sm, false)
	ecs := ecstest.New(ecstest.Options{Region: smtest.Region, AccessKeyID: "ASIAECSTESTTASKROLE",
		SecretAccessKey: "ecstest-task-role-secret-key", SessionToken: "ecstest-task-role-session"})
	defer ecs.Close()
	for k, v := range ecs.Env() {
		t.Setenv(k, v)
	}
	sm.AddCredentials(aws.Credentials{AccessKeyID: "ASIAECSTESTTASKROLE", SecretAccessKey: "ecstest-task-role-secret-key", SessionToken: "ecstest-task-role-session"})
	sm.PutSecret("azp/task-role", "task-role-token")
	v, err := secrets.FetchSecretWith(secrets.SecretsManagerOptions{})(context.Background(), "azp/task-role")
	if err != nil || v != "task-role-token" {
		t.Fatalf("%q %v", v, err)
	}
	calls := sm.Calls()
	if calls[len(calls)-1].AccessKeyID != "ASIAECSTESTTASKROLE" || ecs.CredentialRequests() == 0 {
		t.Fatalf("not signed with the task role: %+v", calls)
	}
}

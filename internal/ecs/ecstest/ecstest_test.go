package ecstest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/azp-entrypoint/azp-entrypoint/internal/ecs/ecstest"
)

func TestEnv(t *testing.T) {
	s := ecstest.New(ecstest.Options{})
	defer s.Close()
	env := s.Env()
	for _, k := range []string{"ECS_CONTAINER_METADATA_URI_V4", "ECS_AGENT_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"} {
		u, err := url.Parse(env[k])
		if k == "AWS_CONTAINER_AUTHORIZATION_TOKEN" {
			if env[k] == "" {
				t.Errorf("%s empty", k)
			}
			continue
		}
		if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" {
			t.Errorf("%s = %q: want http://127.0.0.1:port/...", k, env[k])
		}
	}
	if len(s.Environ()) != len(env) {
		t.Errorf("Environ has %d entries, Env %d", len(s.Environ()), len(env))
	}
	noTok := ecstest.New(ecstest.Options{NoAuthToken: true})
	defer noTok.Close()
	if _, ok := noTok.Env()["AWS_CONTAINER_AUTHORIZATION_TOKEN"]; ok {
		t.Error("NoAuthToken still sets AWS_CONTAINER_AUTHORIZATION_TOKEN")
	}
}

// The AWS SDK's default credential chain accepts the fake as the ECS container credentials
// provider (FULL_URI on loopback plus the authorization token), as it would on Fargate.
func TestCredentialsThroughAWSSDK(t *testing.T) {
	s := ecstest.New(ecstest.Options{AccessKeyID: "ASIAFROMECSTEST00001", SecretAccessKey: "s3cr3t", SessionToken: "tok"})
	defer s.Close()
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for k, v := range s.Env() {
		t.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatalf("Retrieve: %v", err)
	}
	if creds.AccessKeyID != "ASIAFROMECSTEST00001" || creds.SecretAccessKey != "s3cr3t" || creds.SessionToken != "tok" || !creds.CanExpire {
		t.Errorf("creds = %+v", creds)
	}
	if s.CredentialRequests() != 1 {
		t.Errorf("credential requests = %d", s.CredentialRequests())
	}
}

func TestCredentialsNeedToken(t *testing.T) {
	s := ecstest.New(ecstest.Options{})
	defer s.Close()
	resp, err := http.Get(s.CredentialsURI)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without token: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, s.CredentialsURI, nil)
	req.Header.Set("Authorization", s.Env()["AWS_CONTAINER_AUTHORIZATION_TOKEN"])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("with token: %d %v", resp.StatusCode, err)
	}
	for _, k := range []string{"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"} {
		if body[k] == "" {
			t.Errorf("%s missing", k)
		}
	}
}

func TestProtectionValidation(t *testing.T) {
	s := ecstest.New(ecstest.Options{})
	defer s.Close()
	url := s.AgentURI + "/task-protection/v1/state"
	for _, body := range []string{`{}`, `{"ProtectionEnabled":true,"Extra":1}`, `{"ProtectionEnabled":true,"ExpiresInMinutes":0}`, `{"ProtectionEnabled":true,"ExpiresInMinutes":2881}`, `nope`} {
		req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(data), `"InvalidParameterException"`) {
			t.Errorf("PUT %s: %d %s", body, resp.StatusCode, data)
		}
	}
	if len(s.ProtectionChanges()) != 0 {
		t.Error("invalid requests recorded changes")
	}
	resp, err := http.Get(s.URL + "/v4/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
}

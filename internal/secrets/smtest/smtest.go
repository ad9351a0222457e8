// Package smtest is a loopback fake of AWS Secrets Manager for tests: the awsJson1.1 protocol
// (POST /, X-Amz-Target: secretsmanager.GetSecretValue) with the real service's error shapes
// (__type, HTTP 400), and SigV4 verification by re-signing each request with the SDK's own signer
// (github.com/aws/aws-sdk-go-v2/aws/signer/v4) and comparing the signatures. It also serves a
// minimal ECS container-credentials endpoint, so a test can run the SDK's standard credential chain
// the way a Fargate task does. Test-only: the product never imports it.
package smtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Default credentials and account of the fake.
const (
	AccessKeyID     = "AKIDSMTESTEXAMPLE"
	SecretAccessKey = "smtest-secret-access-key-0123456789"
	Region          = "eu-west-1"
	Account         = "123456789012"
	// ContainerAuthToken is what the container-credentials endpoint expects in Authorization
	// (AWS_CONTAINER_AUTHORIZATION_TOKEN).
	ContainerAuthToken = "smtest-container-auth-token"
	// Container credentials served by the ECS credentials endpoint (with a session token).
	ContainerAccessKeyID     = "ASIASMTESTCONTAINER"
	ContainerSecretAccessKey = "smtest-container-secret-key-abcdef"
	ContainerSessionToken    = "smtest-container-session-token"
)

// Call is one request the fake answered.
type Call struct {
	Time        time.Time
	Target      string
	SecretID    string
	AccessKeyID string
	Status      int
	Error       string // __type of the error answer, "" on success
}

type secret struct {
	name, arn, value string
	version          int
	denied           bool
}

// Server is the fake.
type Server struct {
	srv *httptest.Server

	mu        sync.Mutex
	keys      map[string]aws.Credentials // access key id -> credentials
	secrets   map[string]*secret         // by name
	throttle  int
	calls     []Call
	credCalls int
}

// New starts the fake on a loopback port with the default credentials accepted.
func New() *Server {
	s := &Server{keys: map[string]aws.Credentials{}, secrets: map[string]*secret{}}
	s.keys[AccessKeyID] = aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey}
	s.keys[ContainerAccessKeyID] = aws.Credentials{AccessKeyID: ContainerAccessKeyID, SecretAccessKey: ContainerSecretAccessKey, SessionToken: ContainerSessionToken}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", s.serveAPI)
	mux.HandleFunc("GET /ecs-credentials", s.serveContainerCredentials)
	s.srv = httptest.NewServer(mux)
	return s
}

// Close stops the fake.
func (s *Server) Close() { s.srv.Close() }

// URL is the endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER).
func (s *Server) URL() string { return s.srv.URL }

// ContainerCredentialsURL is the ECS container-credentials endpoint
// (AWS_CONTAINER_CREDENTIALS_FULL_URI, with AWS_CONTAINER_AUTHORIZATION_TOKEN = ContainerAuthToken).
func (s *Server) ContainerCredentialsURL() string { return s.srv.URL + "/ecs-credentials" }

// Env is the environment that points the SDK's default configuration at the fake with static
// credentials.
func (s *Server) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": s.URL(),
		"AWS_REGION":                       Region,
		"AWS_ACCESS_KEY_ID":                AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":            SecretAccessKey,
	}
}

// ARN returns the ARN of a secret name (with the random suffix the service adds).
func ARN(name string) string {
	return fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-AbCdEf", Region, Account, name)
}

// PutSecret creates or updates a secret's SecretString (a new version).
func (s *Server) PutSecret(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[name]
	if sec == nil {
		sec = &secret{name: name, arn: ARN(name)}
		s.secrets[name] = sec
	}
	sec.value = value
	sec.version++
}

// Deny makes reads of the secret fail with AccessDeniedException.
func (s *Server) Deny(name string, denied bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec := s.secrets[name]; sec != nil {
		sec.denied = denied
	} else {
		s.secrets[name] = &secret{name: name, arn: ARN(name), denied: denied}
	}
}

// Throttle makes the next n requests fail with ThrottlingException.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	s.throttle = n
	s.mu.Unlock()
}

// AddCredentials accepts another key pair.
func (s *Server) AddCredentials(c aws.Credentials) {
	s.mu.Lock()
	s.keys[c.AccessKeyID] = c
	s.mu.Unlock()
}

// Calls returns the API requests answered so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// ContainerCredentialCalls counts requests to the container-credentials endpoint.
func (s *Server) ContainerCredentialCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.credCalls
}

func (s *Server) serveContainerCredentials(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.credCalls++
	s.mu.Unlock()
	if r.Header.Get("Authorization") != ContainerAuthToken {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"code":"AccessDenied","message":"Unable to validate the request"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"RoleArn":         "arn:aws:iam::" + Account + ":role/agent-task-role",
		"AccessKeyId":     ContainerAccessKeyID,
		"SecretAccessKey": ContainerSecretAccessKey,
		"Token":           ContainerSessionToken,
		"Expiration":      time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
	})
}

var authRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$`)

func (s *Server) fail(w http.ResponseWriter, c *Call, status int, typ, msg string) {
	c.Status, c.Error = status, typ
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", "00000000-0000-0000-0000-000000000000")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "Message": msg})
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c := Call{Time: time.Now(), Target: r.Header.Get("X-Amz-Target")}
	defer func() {
		s.mu.Lock()
		s.calls = append(s.calls, c)
		s.mu.Unlock()
	}()

	m := authRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		s.fail(w, &c, 400, "MissingAuthenticationTokenException", "Missing Authentication Token")
		return
	}
	c.AccessKeyID = m[1]
	s.mu.Lock()
	creds, known := s.keys[m[1]]
	s.mu.Unlock()
	if !known {
		s.fail(w, &c, 400, "UnrecognizedClientException", "The security token included in the request is invalid.")
		return
	}
	if m[3] != Region || m[4] != "secretsmanager" {
		s.fail(w, &c, 400, "InvalidSignatureException", fmt.Sprintf("Credential should be scoped to a valid region and service (got %s/%s).", m[3], m[4]))
		return
	}
	if err := verify(r, body, creds, m[3], m[5]); err != nil {
		s.fail(w, &c, 400, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. ("+err.Error()+")")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.1") {
		s.fail(w, &c, 400, "SerializationException", "Content-Type must be application/x-amz-json-1.1")
		return
	}
	s.mu.Lock()
	throttled := s.throttle > 0
	if throttled {
		s.throttle--
	}
	s.mu.Unlock()
	if throttled {
		s.fail(w, &c, 400, "ThrottlingException", "Rate exceeded")
		return
	}
	if c.Target != "secretsmanager.GetSecretValue" {
		s.fail(w, &c, 400, "UnknownOperationException", "")
		return
	}
	var in struct {
		SecretId string
	}
	if err := json.Unmarshal(body, &in); err != nil || in.SecretId == "" {
		s.fail(w, &c, 400, "InvalidParameterException", "You must provide a SecretId.")
		return
	}
	c.SecretID = in.SecretId
	s.mu.Lock()
	var sec *secret
	for _, x := range s.secrets {
		if x.name == in.SecretId || x.arn == in.SecretId || strings.TrimSuffix(x.arn, "-AbCdEf") == in.SecretId {
			sec = x
		}
	}
	var out map[string]any
	denied, missing := false, sec == nil || (sec.version == 0 && !sec.denied)
	if sec != nil && sec.denied {
		denied = true
	}
	if !denied && !missing {
		out = map[string]any{
			"ARN": sec.arn, "Name": sec.name, "SecretString": sec.value,
			"VersionId":     fmt.Sprintf("00000000-0000-0000-0000-%012d", sec.version),
			"VersionStages": []string{"AWSCURRENT"}, "CreatedDate": float64(time.Now().Unix()),
		}
	}
	s.mu.Unlock()
	switch {
	case denied:
		s.fail(w, &c, 400, "AccessDeniedException", fmt.Sprintf("User: arn:aws:sts::%s:assumed-role/agent-task-role/task is not authorized to perform: secretsmanager:GetSecretValue on resource: %s because no identity-based policy allows the secretsmanager:GetSecretValue action", Account, in.SecretId))
	case missing:
		s.fail(w, &c, 400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
	default:
		c.Status = 200
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		json.NewEncoder(w).Encode(out)
	}
}

// verify re-signs the request with the SDK's signer and compares.
func verify(r *http.Request, body []byte, creds aws.Credentials, region, signedHeaders string) error {
	date, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("bad X-Amz-Date")
	}
	if d := time.Since(date); d > 15*time.Minute || d < -15*time.Minute {
		return fmt.Errorf("signature expired")
	}
	req, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Host = r.Host
	req.ContentLength = r.ContentLength
	for _, h := range strings.Split(signedHeaders, ";") {
		if h == "host" || h == "content-length" {
			continue
		}
		for _, v := range r.Header.Values(h) {
			req.Header.Add(h, v)
		}
	}
	sum := sha256.Sum256(body)
	provider := credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)
	c, _ := provider.Retrieve(context.Background())
	if err := v4.NewSigner().SignHTTP(context.Background(), c, req, hex.EncodeToString(sum[:]), "secretsmanager", region, date); err != nil {
		return err
	}
	if got, want := r.Header.Get("Authorization"), req.Header.Get("Authorization"); got != want {
		return fmt.Errorf("signature mismatch")
	}
	return nil
}

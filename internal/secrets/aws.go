package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/azp-entrypoint/azp-entrypoint/internal/config"
	"github.com/azp-entrypoint/azp-entrypoint/internal/exit"
	"github.com/azp-entrypoint/azp-entrypoint/internal/logging"
)

// SecretsManagerOptions configure a SecretsManager.
type SecretsManagerOptions struct {
	// AWSConfig overrides the default configuration (config.LoadDefaultConfig: the standard
	// credential chain, which on Fargate is the task role through the ECS credentials endpoint,
	// and the standard endpoint overrides such as AWS_ENDPOINT_URL_SECRETS_MANAGER).
	AWSConfig  *aws.Config
	HTTPClient *http.Client // nil: the SDK's default client
	// MaxAttempts bounds the attempts per fetch; throttling and transient failures are retried
	// with the SDK's jittered exponential backoff. Default 8.
	MaxAttempts int
	MaxBackoff  time.Duration // default 20s
	Masker      *logging.Masker
	Logger      *slog.Logger
}

// SecretsManager fetches AZP_SECRET_ID.
type SecretsManager struct {
	client *secretsmanager.Client
	region string
	masker *logging.Masker
	logger *slog.Logger
}

// NewSecretsManager builds the client. Loading the default configuration reads environment and
// files only; no request is made until Fetch.
func NewSecretsManager(ctx context.Context, o SecretsManagerOptions) (*SecretsManager, error) {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 20 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var cfg aws.Config
	if o.AWSConfig != nil {
		cfg = o.AWSConfig.Copy()
	} else {
		var opts []func(*awsconfig.LoadOptions) error
		// AWS_CA_BUNDLE needs the SDK's own buildable client; it then wins over the shared one.
		if o.HTTPClient != nil && os.Getenv("AWS_CA_BUNDLE") == "" {
			opts = append(opts, awsconfig.WithHTTPClient(o.HTTPClient))
		}
		var err error
		cfg, err = awsconfig.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, exit.Config(fmt.Errorf("AZP_SECRET_ID: cannot load the AWS configuration: %w", err))
		}
	}
	if o.HTTPClient != nil && o.AWSConfig != nil && cfg.HTTPClient == nil {
		cfg.HTTPClient = o.HTTPClient
	}
	maxAttempts, maxBackoff := o.MaxAttempts, o.MaxBackoff
	client := secretsmanager.NewFromConfig(cfg, func(so *secretsmanager.Options) {
		so.Retryer = retry.NewStandard(func(ro *retry.StandardOptions) {
			ro.MaxAttempts = maxAttempts
			ro.MaxBackoff = maxBackoff
			ro.Backoff = retry.NewExponentialJitterBackoff(maxBackoff)
		})
	})
	return &SecretsManager{client: client, region: cfg.Region, masker: o.Masker, logger: o.Logger}, nil
}

// regionOf returns the region of a secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME).
func regionOf(id string) string {
	parts := strings.SplitN(id, ":", 6)
	if len(parts) == 6 && parts[0] == "arn" && parts[2] == "secretsmanager" {
		return parts[3]
	}
	return ""
}

// Fetch returns the secret's SecretString. Every value in it is registered with the masker.
func (m *SecretsManager) Fetch(ctx context.Context, secretID string) (string, error) {
	secretID = strings.TrimSpace(secretID)
	region := m.region
	if r := regionOf(secretID); r != "" && region == "" {
		region = r
	}
	if region == "" {
		return "", exit.Config(fmt.Errorf("AZP_SECRET_ID = %q: no AWS region (set AWS_REGION, which ECS sets for tasks, or give the secret's ARN)", secretID))
	}
	out, err := m.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID)}, func(so *secretsmanager.Options) {
		so.Region = region
	})
	if err != nil {
		return "", m.explain(ctx, secretID, region, err)
	}
	if out.SecretString == nil {
		return "", exit.Config(fmt.Errorf("AZP_SECRET_ID = %q: the secret has no string value (store the token, or a JSON object, as SecretString)", secretID))
	}
	text := *out.SecretString
	m.register(text)
	return text, nil
}

func (m *SecretsManager) register(text string) {
	if m.masker == nil {
		return
	}
	if vals, _, err := config.ParseSecret(text); err == nil {
		for k, v := range vals {
			if d, ok := config.Lookup(k); ok && d.Secret {
				m.masker.Add(v)
			}
		}
	}
	if t := strings.TrimSpace(text); !strings.HasPrefix(t, "{") {
		m.masker.Add(t)
	}
}

func (m *SecretsManager) explain(ctx context.Context, id, region string, err error) error {
	if ctx.Err() != nil {
		return exit.Runtime(fmt.Errorf("AZP_SECRET_ID = %q: %w", id, ctx.Err()))
	}
	if s := err.Error(); strings.Contains(s, "get identity") || strings.Contains(s, "retrieve credentials") || strings.Contains(s, "refresh cached credentials") {
		return exit.Auth(fmt.Errorf("AZP_SECRET_ID = %q: no AWS credentials to read the secret with (on ECS give the task a task role; elsewhere use the standard AWS credential settings): %w", id, err))
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg := ae.ErrorCode(), ae.ErrorMessage()
		switch code {
		case "ResourceNotFoundException":
			return exit.Config(fmt.Errorf("AZP_SECRET_ID = %q: secret not found in region %s (%s); check the name or ARN and AWS_REGION", id, region, msg))
		case "InvalidRequestException", "InvalidParameterException":
			return exit.Config(fmt.Errorf("AZP_SECRET_ID = %q: Secrets Manager refused the request: %s (%s)", id, msg, code))
		case "AccessDeniedException", "DecryptionFailure", "UnrecognizedClientException", "InvalidSignatureException",
			"ExpiredTokenException", "InvalidClientTokenId", "IncompleteSignature", "MissingAuthenticationToken":
			return exit.Auth(fmt.Errorf("AZP_SECRET_ID = %q: access denied (%s: %s); allow the task role secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key)", id, code, msg))
		case "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException":
			return exit.Runtime(fmt.Errorf("AZP_SECRET_ID = %q: Secrets Manager kept throttling the request after retries (%s)", id, code))
		}
		return exit.Runtime(fmt.Errorf("AZP_SECRET_ID = %q: Secrets Manager: %s: %s", id, code, msg))
	}
	return exit.Runtime(fmt.Errorf("AZP_SECRET_ID = %q: cannot reach Secrets Manager in %s: %w", id, region, err))
}

// FetchSecret is the Secrets Manager fetcher config.Resolve takes, with the default AWS
// configuration. The client is built at the first call.
func FetchSecret(ctx context.Context) config.SecretFetcher {
	return FetchSecretWith(SecretsManagerOptions{})
}

// FetchSecretWith is FetchSecret with options.
func FetchSecretWith(o SecretsManagerOptions) config.SecretFetcher {
	var (
		mu sync.Mutex
		sm *SecretsManager
	)
	return func(ctx context.Context, id string) (string, error) {
		mu.Lock()
		if sm == nil {
			var err error
			if sm, err = NewSecretsManager(ctx, o); err != nil {
				mu.Unlock()
				return "", err
			}
		}
		m := sm
		mu.Unlock()
		return m.Fetch(ctx, id)
	}
}

package ecssim

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
)

// Client returns the real aws-sdk-go-v2 ECS client pointed at the simulator, signing with the
// default access key.
func (s *Server) Client(optFns ...func(*ecs.Options)) *ecs.Client {
	cfg := aws.Config{Region: s.opts.Region,
		Credentials: credentials.NewStaticCredentialsProvider(DefaultAccessKeyID, s.opts.Keys[DefaultAccessKeyID], "")}
	return ecs.NewFromConfig(cfg, append([]func(*ecs.Options){func(o *ecs.Options) { o.BaseEndpoint = aws.String(s.baseURL) }}, optFns...)...)
}

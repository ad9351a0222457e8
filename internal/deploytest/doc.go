// Package deploytest holds the offline checks of the deployment files around the
// binary: image/Dockerfile, compose.yaml with .env.example, and terraform/.
//
// Users deploy these files as they are, so the tests hold them to the binary itself:
// every AZP_* variable they set must be a real setting of internal/config, the stop
// budget (ECS stopTimeout, compose stop_grace_period) must equal AZP_STOP_TIMEOUT,
// the health check must call `azp-entrypoint health`, and the security defaults
// (non-root, no extra init, least-privilege IAM, TLS-only EFS) must hold in every
// storage mode.
//
// The checks parse the files with the same libraries the real tools use (HCL,
// compose-go, BuildKit's Dockerfile parser) and evaluate the Terraform locals and
// blocks with mock values for resource attributes, because the AWS provider cannot
// be installed where these tests run. They must never reach a network or a Docker
// engine; external linters (shellcheck) are run only when installed.
package deploytest

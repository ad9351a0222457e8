# shellcheck shell=bash
# The linters' pinned versions, sourced by scripts/tools.sh (which installs them) and
# scripts/lint-terraform.sh (which checks them).
# shellcheck disable=SC2034 # used by the scripts that source this file
STATICCHECK_VERSION=v0.8.2
TFLINT_VERSION=v0.55.1
TFSEC_VERSION=v1.28.14

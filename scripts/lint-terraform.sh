#!/usr/bin/env bash
# Lint terraform/ offline:
#   terraform fmt -check  (only if terraform is installed; the Go tests check formatting anyway)
#   tflint                (the bundled terraform ruleset only: no plugin downloads)
#   tfsec                 (fails on any HIGH or CRITICAL finding without an inline
#                          "#tfsec:ignore:<rule> <reason>")
# The AWS provider is not installed, so there is no `terraform validate` here:
# go test ./internal/deploytest/ evaluates the module instead.
#
# Usage: scripts/lint-terraform.sh [--install]
#   --install  first install the pinned tflint and tfsec into .tools/bin (scripts/tools.sh)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/tool-versions.sh source-path=SCRIPTDIR/..
source scripts/tool-versions.sh
bin="$root/.tools/bin"
export PATH="$bin:$PATH"

if [[ ${1:-} == --install ]]; then
	bash scripts/tools.sh tflint tfsec
elif [[ $# -gt 0 ]]; then
	echo "usage: $0 [--install]" >&2
	exit 2
fi

require() {
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "lint-terraform: $1 not found; run '$0 --install' or 'make tools' (go install $2)" >&2
		exit 1
	fi
}

status=0

if command -v terraform >/dev/null 2>&1; then
	echo "==> terraform fmt -check -recursive terraform"
	if ! terraform fmt -check -recursive -diff terraform; then
		echo "lint-terraform: run 'terraform fmt -recursive terraform'" >&2
		status=1
	fi
else
	echo "==> terraform not installed: skipping terraform fmt (go test ./internal/deploytest/ checks formatting with hclwrite)"
fi

require tflint "github.com/terraform-linters/tflint@${TFLINT_VERSION}"
require tfsec "github.com/aquasecurity/tfsec/cmd/tfsec@${TFSEC_VERSION}"

have=$(tflint --version)
case "$have" in
*"version ${TFLINT_VERSION#v}"*) ;;
*) echo "lint-terraform: warning: tflint is not ${TFLINT_VERSION}: ${have%%$'\n'*}" >&2 ;;
esac

echo "==> tflint --chdir terraform (bundled terraform ruleset)"
if ! tflint --chdir terraform --config .tflint.hcl --format compact; then
	status=1
fi

echo "==> tfsec terraform --minimum-severity HIGH"
if ! tfsec terraform --minimum-severity HIGH --no-module-downloads --concise-output --no-color; then
	status=1
fi

exit "$status"

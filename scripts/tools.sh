#!/usr/bin/env bash
# Installs the pinned linters into .tools/bin. Each one is built from source (go install, through the
# Go module proxy) once per version into a cache directory outside the clone, keyed by name and
# version, so a second clone or CI run on the same machine only links the cached binaries:
#   ${AZP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/azp-entrypoint/tools}/<name>@<version>/<name>
# From a cold cache tflint and tfsec take about 6 CPU-minutes to compile; staticcheck under 1.
#
# Usage: scripts/tools.sh            install all
#        scripts/tools.sh NAME...    install only these (staticcheck, tflint, tfsec)
# Versions: scripts/tool-versions.sh.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/tool-versions.sh source-path=SCRIPTDIR/..
source "$root/scripts/tool-versions.sh"
bin="$root/.tools/bin"
cache=${AZP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/azp-entrypoint/tools}

declare -A module=(
	[staticcheck]="honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
	[tflint]="github.com/terraform-linters/tflint@$TFLINT_VERSION"
	[tfsec]="github.com/aquasecurity/tfsec/cmd/tfsec@$TFSEC_VERSION"
)

install() {
	local name=$1 mod=${module[$1]:?unknown tool $1}
	local dir="$cache/$name@${mod##*@}"
	if [[ ! -x $dir/$name ]]; then
		echo "tools: building $mod into $dir"
		mkdir -p "$dir.tmp.$$"
		# -s -w: no symbol tables or DWARF, which shortens the link of these large binaries.
		GOBIN="$dir.tmp.$$" go install -trimpath -ldflags='-s -w' "$mod"
		rm -rf "$dir" && mv "$dir.tmp.$$" "$dir"
	fi
	mkdir -p "$bin"
	ln -sf "$dir/$name" "$bin/$name"
}

if (($# == 0)); then
	set -- staticcheck tflint tfsec
fi
for t in "$@"; do
	install "$t"
done

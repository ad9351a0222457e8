#!/usr/bin/env bash
# Installs the Docker CLI plugins the container tests need, at pinned versions, from the Go
# module proxy (no registry or download site is reachable on CI machines): buildx (BuildKit
# builds: .dockerignore per Dockerfile, RUN --mount, TARGETARCH) and compose (the compose
# specification; Debian's docker-compose 1.29 does not speak it).
#
# Idempotent: a plugin already answering with the pinned version is left alone, so this runs
# once per machine. Installs into ~/.docker/cli-plugins (DOCKER_CONFIG/cli-plugins if set).
set -euo pipefail

BUILDX_VERSION="${BUILDX_VERSION:-v0.38.2}"
# compose v2.40.x and v5.4+ do not `go install` (exclude directives in go.mod, newer Go);
# v2.28.1 does and speaks engine API 1.41 (Docker 20.10).
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.28.1}"
GO="${GO:-go}"

plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugins"

# version_of PLUGIN: the version string the installed plugin reports, empty if none.
version_of() {
  local bin="$plugins/docker-$1"
  [ -x "$bin" ] || return 0
  case "$1" in
    buildx) "$bin" version 2>/dev/null | awk '{print $2}' ;;
    compose) "$bin" compose version --short 2>/dev/null | sed 's/^v*/v/' ;;
  esac
}

# install NAME MODULE_PATH VERSION BINARY_NAME VERSION_VARIABLE
install_plugin() {
  local name=$1 pkg=$2 version=$3 built=$4 var=$5 have
  have=$(version_of "$name")
  if [ "$have" = "$version" ]; then
    echo "docker-$name $version already installed"
    return 0
  fi
  local start=$SECONDS gobin
  gobin=$(mktemp -d)
  # CGO off: static plugins, no C toolchain needed.
  CGO_ENABLED=0 GOBIN="$gobin" GOFLAGS=-mod=mod "$GO" install -trimpath \
    -ldflags "-s -w -X $var=$version" "$pkg@$version"
  install -m 0755 "$gobin/$built" "$plugins/docker-$name.tmp"
  mv -f "$plugins/docker-$name.tmp" "$plugins/docker-$name"
  rm -rf "$gobin"
  echo "docker-$name $version installed in $((SECONDS - start))s"
}

install_plugin buildx github.com/docker/buildx/cmd/buildx "$BUILDX_VERSION" buildx \
  github.com/docker/buildx/version.Version &
bx=$!
install_plugin compose github.com/docker/compose/v2/cmd "$COMPOSE_VERSION" cmd \
  github.com/docker/compose/v2/internal.Version &
cp=$!
rc=0
wait "$bx" || rc=1
wait "$cp" || rc=1
exit "$rc"

#!/usr/bin/env bash
# Makes the Debian base image the container tests build image/Dockerfile on, without a registry:
# `debootstrap --variant=minbase` of Debian from the Debian mirror, imported with `docker import`.
# No registry is reachable on CI machines and Alpine's package repositories are not either, so
# the tests build the Debian (glibc) variant of the image on this base; Alpine stays the default
# for users (see README, "The image").
#
# The packages the image's OS-package step wants on Debian are included here, so that step finds
# them installed and needs no network inside the build.
#
# Cached by content: the tag is a hash of this script, the suite, the mirror and the architecture,
# so the base is made once per machine. Prints the image reference on stdout (logs go to stderr).
set -euo pipefail

SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
# Keep in step with the Debian list of image/Dockerfile's OS-package step.
PACKAGES="bash,ca-certificates,git,iputils-ping,libcap2-bin,libicu72,libkrb5-3,libssl3,libstdc++6,passwd,tzdata,zlib1g"

self="${BASH_SOURCE[0]}"
hash="$(printf '%s\n%s\n%s\n%s\n' "$SUITE" "$MIRROR" "$ARCH" "$PACKAGES" | cat - "$self" | sha256sum | cut -c1-16)"
ref="azp-base/debian:${SUITE}-${hash}"

if docker image inspect "$ref" >/dev/null 2>&1; then
  echo "$ref"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >&2
  else
    echo "debootstrap is missing: apt-get install debootstrap (as root)" >&2
    exit 1
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "debootstrap needs root" >&2
  exit 1
fi

start=$SECONDS
root="$(mktemp -d /tmp/azp-debian-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --arch="$ARCH" --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >&2
# Nothing of the build host or of the download stays in the image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/log/* "$root"/tmp/* "$root"/root/.bash_history
: >"$root/etc/hostname"
: >"$root/etc/resolv.conf"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$root" -c . |
  docker import --change 'CMD ["/bin/bash"]' - "$ref" >&2
echo "debian base $ref made in $((SECONDS - start))s" >&2
echo "$ref"

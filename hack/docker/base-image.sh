#!/usr/bin/env bash
# The local base image (no registry is reachable): Debian bookworm minbase with python3 (3.11),
# venv and CA certificates, made with debootstrap and `docker import`. Cached as a tarball keyed
# by this script's hash, so a fresh dockerd loads it instead of bootstrapping again.
#   prints the image name
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image=${ELASTICJOB_BASE_IMAGE:-elasticjob-base:bookworm}
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}/images
key=$(sha256sum "$0" | cut -c1-12)
tarball="$cache/base-$key.tar"
docker=/usr/bin/docker
if "$docker" image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi
mkdir -p "$cache"
if [ -f "$tarball" ]; then
  "$docker" load -i "$tarball" >&2
  echo "$image"; exit 0
fi
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "base-image: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >&2
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$docker" import - "$image" >&2
"$docker" save -o "$tarball.tmp" "$image" && mv "$tarball.tmp" "$tarball"
echo "$image"

#!/usr/bin/env bash
# Build (once) hack/kind/runc-capshim, the OCI runtime wrapper that drops capabilities missing
# from this machine's bounding set before calling the real runc (see its main.go), and print its
# path. Cached outside the clone keyed by the source hash, so a running dockerd never points into
# a work tree that may go away. Needs Go (stdlib only, no module downloads).
#   bash hack/kind/capshim.sh  -> e.g. ~/.cache/elasticjob/bin/runc-capshim-1a2b3c4d5e6f/runc-capshim
# `bash hack/kind/capshim.sh --needed` exits 0 if this machine needs it (its bounding set lacks a
# capability among 0..40, the ones runc grants to --privileged), 1 if not, and builds nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = --needed ]; then
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  [ $(( 0x$bnd & 0x1ffffffffff )) -ne $(( 0x1ffffffffff )) ]
  exit
fi
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
key=$(cat "$here/runc-capshim/go.mod" "$here/runc-capshim/main.go" "$0" | sha256sum | cut -c1-12)
dir="$cache/bin/runc-capshim-$key"
if [ ! -x "$dir/runc-capshim" ]; then
  mkdir -p "$dir"
  echo "capshim: building runc-capshim" >&2
  (cd "$here/runc-capshim" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS= nice -n 19 \
    go build -trimpath -ldflags "-s -w" -o "$dir/runc-capshim.tmp" . && mv "$dir/runc-capshim.tmp" "$dir/runc-capshim")
fi
echo "$dir/runc-capshim"

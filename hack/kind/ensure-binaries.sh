#!/usr/bin/env bash
# Build (once) what the kind node image and `make kind-up` need beyond hack/k8s/ensure.sh:
# kubelet, kubeadm and kube-proxy (same Kubernetes version, go.mod and version ldflags as
# ensure.sh), CoreDNS (from its Go module) and the kind CLI. Cached outside the clone keyed by
# versions and input hashes; prints the bin directory.
#
#   bash hack/kind/ensure-binaries.sh   -> e.g. ~/.cache/elasticjob/bin/kind-node-v1.35.4-coredns-v1.13.1-kind-v0.33.0-1a2b3c4d
#
# Limits: static (CGO_ENABLED=0) linux/amd64 builds of the host's architecture only. hack/k8s/go.mod
# is used read-only through -modfile on a copy, so ensure.sh's cache key never changes. Logs go to
# stderr; stdout is only the directory. A warm call returns at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s=$(cd "$here/../k8s" && pwd)
K8S_VERSION=v1.35.4
COREDNS_VERSION=v1.13.1
KIND_VERSION=v0.33.0
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
modhash=$(cat "$k8s/go.mod" "$k8s/go.sum" "$0" | sha256sum | cut -c1-8)
key="kind-node-$K8S_VERSION-coredns-$COREDNS_VERSION-kind-$KIND_VERSION-$modhash"
dir="$cache/bin/$key"
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi

mkdir -p "$cache/bin"
exec 9>"$cache/bin/.lock-kind"
flock 9
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi

export GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS=-mod=mod
tmp="$dir.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp/modfile"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
# a private copy of the module file: `go build` may add requirements, never to the tracked one
cp "$k8s/go.mod" "$k8s/go.sum" "$tmp/modfile/"
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for cmd in kubelet kubeadm kube-proxy; do
  echo "ensure-binaries: building $cmd $K8S_VERSION" >&2
  (cd "$k8s" && nice -n 19 go build -modfile "$tmp/modfile/go.mod" -trimpath -ldflags "$ldflags" \
    -o "$tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
done
echo "ensure-binaries: building coredns $COREDNS_VERSION" >&2
GOBIN="$tmp" nice -n 19 go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
echo "ensure-binaries: building kind $KIND_VERSION" >&2
GOBIN="$tmp" nice -n 19 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION"
rm -rf "$tmp/modfile"
echo "built in $(( $(date +%s) - start ))s" > "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "ensure-binaries: done in $(( $(date +%s) - start ))s: $dir" >&2
echo "$dir"

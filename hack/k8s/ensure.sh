#!/usr/bin/env bash
# Build (once) the pinned Kubernetes control plane, kubectl, etcd and helm from the Go module
# proxy, cache them outside the clone keyed by version, and print the bin directory.
#
#   bash hack/k8s/ensure.sh            -> prints e.g. ~/.cache/elasticjob/bin/k8s-v1.35.4-etcd-v3.6.16-helm-v3.19.5-1a2b3c4d
#
# A warm call returns at once. Builds go to a temp dir renamed into place when complete, under a
# lock, so an interrupted or concurrent build never leaves a half-built directory behind.
# Logs go to stderr; stdout is only the directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.19.5
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
modhash=$(cat "$here/go.mod" "$here/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" "$0" | sha256sum | cut -c1-8)
key="k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION-$modhash"
dir="$cache/bin/$key"
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi

mkdir -p "$cache/bin"
exec 9>"$cache/bin/.lock"
flock 9
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
tmp="$dir.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
start=$(date +%s)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  echo "ensure.sh: building $cmd $K8S_VERSION" >&2
  (cd "$here" && go build -trimpath -ldflags "$ldflags" -o "$tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd")
done
echo "ensure.sh: building etcd $ETCD_VERSION" >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" .)
echo "ensure.sh: building helm $HELM_VERSION" >&2
GOBIN="$tmp" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
echo "built in $(( $(date +%s) - start ))s" > "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "ensure.sh: done in $(( $(date +%s) - start ))s: $dir" >&2
echo "$dir"

#!/usr/bin/env bash
# Create the kind cluster $ELASTICJOB_KIND_CLUSTER (default "elasticjob") from the project's own
# node image (hack/kind/build-node-image.sh, built or loaded from cache) with hack/kind/cluster.yaml
# (or $ELASTICJOB_KIND_CONFIG), wait until every node is Ready, show them, print the KUBECONFIG.
# Uses the kind and kubectl binaries built from the Go module proxy (no downloads of binaries).
# Limits: one cluster per name; an existing cluster of that name is an error (`make kind-down`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
name=${ELASTICJOB_KIND_CLUSTER:-elasticjob}
config=${ELASTICJOB_KIND_CONFIG:-$here/cluster.yaml}
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
kubeconfig=${ELASTICJOB_KIND_KUBECONFIG:-$cache/kind/kubeconfig-$name}
log() { echo "kind-up: $*" >&2; }
t0=$(date +%s)
image=$(bash "$here/build-node-image.sh")
t1=$(date +%s)
k8sbin=$(bash "$root/hack/k8s/ensure.sh")
kindbin=$(bash "$here/ensure-binaries.sh")
export PATH="$k8sbin:$kindbin:$PATH"
if bash "$here/capshim.sh" --needed && [ "$(/usr/bin/docker info -f '{{.DefaultRuntime}}')" != elasticjob-capshim ]; then
  log "this machine's capability bounding set lacks capabilities of privileged containers and"
  log "the running dockerd was not started with runc-capshim; stop it and run hack/docker/ensure-dockerd.sh"
  exit 1
fi
mkdir -p "$(dirname "$kubeconfig")"
log "creating cluster $name from $image ($config)"
kind create cluster --name "$name" --image "$image" --config "$config" --kubeconfig "$kubeconfig" --wait 300s >&2
t2=$(date +%s)
kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready nodes --all --timeout=300s >&2
t3=$(date +%s)
kubectl --kubeconfig "$kubeconfig" get nodes -o wide
log "image $(( t1 - t0 ))s, kind create $(( t2 - t1 ))s, all nodes Ready after $(( t3 - t2 ))s more; total $(( t3 - t0 ))s"
echo "export KUBECONFIG=$kubeconfig"

#!/usr/bin/env bash
# Delete the kind cluster $ELASTICJOB_KIND_CLUSTER (default "elasticjob") made by hack/kind/up.sh
# and its kubeconfig. Leaves dockerd, the node image and every cache alone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=${ELASTICJOB_KIND_CLUSTER:-elasticjob}
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
kubeconfig=${ELASTICJOB_KIND_KUBECONFIG:-$cache/kind/kubeconfig-$name}
kindbin=$(bash "$here/ensure-binaries.sh")
"$kindbin/kind" delete cluster --name "$name" --kubeconfig "$kubeconfig" >&2
rm -f "$kubeconfig"

#!/usr/bin/env bash
# Build (once) the pinned Kueue manager from its Go module, copy the manifests it needs from the
# same module's source, cache both outside the clone keyed by version, and print the directory.
#
#   bash hack/kueue/ensure.sh          -> prints e.g. ~/.cache/elasticjob/bin/kueue-v0.17.0-1a2b3c4d
#
# The directory holds:
#   kueue                 the manager (go install sigs.k8s.io/kueue/cmd/kueue@KUEUE_VERSION)
#   crd/*.yaml            the 11 CRDs of config/components/crd/bases (no conversion webhook patches)
#   rbac/*.yaml           the manager's RBAC of config/components/rbac (kustomize names: no `kueue-` prefix,
#                         namespace `system`; elasticjob_localcluster.kueue renames them as kustomize does)
#   webhook/*.yaml        config/components/webhook: manifests.yaml (the webhook configurations), service.yaml
#
# A warm call returns at once. Builds go to a temp dir renamed into place when complete, under a
# lock, so an interrupted or concurrent build never leaves a half-built directory behind.
# Logs go to stderr; stdout is only the directory.
set -euo pipefail
KUEUE_VERSION=v0.17.0
MODULE=sigs.k8s.io/kueue
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
hash=$(sha256sum < "$0" | cut -c1-8)
dir="$cache/bin/kueue-$KUEUE_VERSION-$hash"
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi

mkdir -p "$cache/bin"
exec 9>"$cache/bin/.lock-kueue"
flock 9
if [ -f "$dir/.complete" ]; then echo "$dir"; exit 0; fi

export GOTOOLCHAIN=local CGO_ENABLED=0
tmp="$dir.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
start=$(date +%s)
echo "ensure.sh: building kueue $KUEUE_VERSION ($(go version | cut -d' ' -f3))" >&2
# module mode outside any main module: go.mod of kueue has no replace/exclude, so go install takes it
(cd "$tmp" && GOBIN="$tmp" go install -trimpath \
  -ldflags "-s -w -X $MODULE/pkg/version.GitVersion=$KUEUE_VERSION" "$MODULE/cmd/kueue@$KUEUE_VERSION")
src=$(cd "$tmp" && go mod download -json "$MODULE@$KUEUE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [ ! -d "$src/config/components" ]; then
  echo "ensure.sh: no module source for $MODULE@$KUEUE_VERSION (go mod download gave '$src')" >&2
  exit 1
fi
mkdir -p "$tmp/crd" "$tmp/rbac" "$tmp/webhook"
cp "$src"/config/components/crd/bases/*.yaml "$tmp/crd/"
n=$(find "$tmp/crd" -name '*.yaml' | wc -l)
if [ "$n" -ne 11 ]; then echo "ensure.sh: expected 11 CRDs, found $n" >&2; exit 1; fi
# the manager's own RBAC (the first block of config/components/rbac/kustomization.yaml): its
# ClusterRole, the namespaced Roles for leader election and its secrets, the metrics authn/authz
# role, their bindings and the ServiceAccount; not the user-facing editor/viewer ClusterRoles
for f in service_account role role_binding leader_election_role leader_election_role_binding \
         manager_secrets_role manager_secrets_role_binding metrics_auth_role metrics_auth_role_binding; do
  cp "$src/config/components/rbac/$f.yaml" "$tmp/rbac/"
done
cp "$src/config/components/webhook/manifests.yaml" "$src/config/components/webhook/service.yaml" "$tmp/webhook/"
chmod -R u+w "$tmp"
"$tmp/kueue" --help >/dev/null 2>&1 || { echo "ensure.sh: $tmp/kueue does not run" >&2; exit 1; }
echo "kueue $KUEUE_VERSION from $src, built in $(( $(date +%s) - start ))s" > "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "ensure.sh: done in $(( $(date +%s) - start ))s: $dir" >&2
echo "$dir"

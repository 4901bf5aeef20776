#!/usr/bin/env bash
# Make sure dockerd holds elasticjob-operator:dev, elasticjob-training:dev and the CI-only
# elasticjob-training:ci (the trimmed CPU variant e2e.sh loads into kind) built from the
# current work tree, building them with hack/docker/build-images.sh (the project's Dockerfile and
# its checks) only when the inputs changed:
#   bash hack/kind/project-images.sh      -> prints the three image names, one a line
# The key is a hash of every file the Dockerfile copies or that shapes the build (Dockerfile,
# .dockerignore, pyproject.toml, README.md, api/ operator/ launcher/ localcluster/, hack/docker/,
# the CPU example the training-ci target runs,
# tracked and untracked, as git sees them) and of the CA bundle build-images.sh copies in. A build
# is recorded by tagging each image <repo>:src-<key>-<tag>; a later call with the same key re-tags
# those as <repo>:<tag> and builds nothing.
# Limits: needs git (outside a git work tree it always builds); the record lives in dockerd, so a
# fresh dockerd builds again (Docker's layer cache, if any, makes that quick); image names are the
# fixed ones of the examples and the chart.
#   bash hack/kind/project-images.sh --rebuild   -> builds and checks whatever the record says, and
#                                                   records the result (tests/images does this, so
#                                                   the kind step of the same run builds nothing)
set -euo pipefail
rebuild=0
[ "${1:-}" = --rebuild ] && rebuild=1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
docker=/usr/bin/docker
images=(elasticjob-operator:dev elasticjob-training:dev elasticjob-training:ci)
log() { echo "project-images: $*" >&2; }

bash "$root/hack/docker/ensure-dockerd.sh"
key=
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  key=$( {
    cd "$root"
    git ls-files -z -co --exclude-standard -- Dockerfile .dockerignore pyproject.toml README.md \
      api operator launcher localcluster hack/docker manifests/examples/train_cpu.py |
      sort -zu | while IFS= read -r -d '' f; do
        # the CA bundle build-images.sh copies in is hashed below, from where it comes
        case $f in hack/docker/extra-ca/host-bundle.crt | hack/docker/extra-ca/extra.crt) continue ;; esac
        [ -f "$f" ] && sha256sum "$f"
      done
    bundle=${EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
    [ -f "$bundle" ] && sha256sum <"$bundle"
    echo "${images[*]}"
  } | sha256sum | cut -c1-12)
fi

record() { echo "${1%:*}:src-$key-${1##*:}"; }  # elasticjob-training:ci -> elasticjob-training:src-<key>-ci
records=()
for image in "${images[@]}"; do records+=("$(record "$image")"); done
if [ "$rebuild" = 0 ] && [ -n "$key" ] && "$docker" image inspect "${records[@]}" >/dev/null 2>&1; then
  for image in "${images[@]}"; do "$docker" tag "$(record "$image")" "$image"; done
  log "images are current (key $key)"
else
  log "building ${images[*]} (key ${key:-none})"
  s=$(date +%s)
  OPERATOR_IMAGE=${images[0]} TRAINING_IMAGE=${images[1]} TRAINING_CI_IMAGE=${images[2]} \
    bash "$root/hack/docker/build-images.sh" >&2
  log "built and checked in $(( $(date +%s) - s ))s"
  if [ -n "$key" ]; then
    for image in "${images[@]}"; do
      # forget older records (the tags only; layers still used by the current images stay)
      "$docker" image ls --format '{{.Repository}}:{{.Tag}}' "${image%:*}" | grep ":src-" | grep -v ":src-$key-" |
        xargs -r "$docker" rmi >/dev/null 2>&1 || true
      "$docker" tag "$image" "$(record "$image")"
    done
  fi
fi
printf '%s\n' "${images[@]}"

#!/usr/bin/env bash
# The Kueue manager as a container image, for kind (no registry is reachable): the static binary
# of hack/kueue/ensure.sh in a FROM scratch image, built by the project's dockerd.
#
#   bash hack/kueue/image.sh          -> prints the image name, elasticjob.local/kueue:<version>
#
# The image: /kueue (the only file), USER 65532:65532, ENTRYPOINT ["/kueue"]. Nothing else is
# needed: the manager is static (CGO_ENABLED=0), reaches the API server with its ServiceAccount's
# projected CA, reads its Configuration and certificates from mounted volumes and writes no file,
# so it runs on a read-only root filesystem (elasticjob_localcluster.kueue's `image_name` is this
# name; `install(..., image=...)` runs it under Kubernetes' restricted profile).
# The build is recorded by a label, the key of the binary's directory (its name carries
# ensure.sh's hash) and of this script: a warm call builds nothing; a fresh dockerd builds again
# (a few seconds: one COPY of the ~85 MB binary). Logs go to stderr; stdout is only the name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
docker=/usr/bin/docker
log() { echo "kueue-image: $*" >&2; }

bash "$root/hack/docker/ensure-dockerd.sh"
dir=$(bash "$here/ensure.sh")
base=$(basename "$dir")            # kueue-v0.17.0-<hash of ensure.sh>
version=${base#kueue-}; version=${version%-*}
image=elasticjob.local/kueue:$version
key=$( { echo "$base"; sha256sum <"$0"; } | sha256sum | cut -c1-12)
old=$("$docker" image inspect -f '{{.Id}} {{index .Config.Labels "io.elasticjob.kueue.key"}}' "$image" 2>/dev/null || true)
if [ "${old#* }" = "$key" ]; then
  log "$image is current (key $key)"; echo "$image"; exit 0
fi
s=$(date +%s)
ctx=$(mktemp -d "$cache/kueue-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
ln "$dir/kueue" "$ctx/kueue" 2>/dev/null || cp "$dir/kueue" "$ctx/kueue"
cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY kueue /kueue
USER 65532:65532
ENTRYPOINT ["/kueue"]
LABEL io.elasticjob.kueue.key=$key io.elasticjob.kueue.version=$version
EOF
DOCKER_BUILDKIT=0 nice -n 19 "$docker" build -q --network none -t "$image" "$ctx" >&2
# the image this one replaces, if no other tag holds it
[ -z "$old" ] || [ "${old%% *}" = "$("$docker" image inspect -f '{{.Id}}' "$image")" ] ||
  "$docker" rmi "${old%% *}" >/dev/null 2>&1 || true
log "built $image in $(( $(date +%s) - s ))s ($("$docker" image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'), key $key)"
echo "$image"

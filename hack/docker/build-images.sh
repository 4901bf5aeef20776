#!/usr/bin/env bash
# Build the operator and training images from the Dockerfile with Docker's classic builder, then
# check them: the operator image has no torch and `elasticjob-operator --help` runs in it as its
# non-root user on a read-only root filesystem; a 2-process `elasticjob-launch --standalone` job
# runs in the training image; the CPU example runs in the CI-only training-ci target (the training
# image less what CPU training never maps, see the Dockerfile). The checks run on every call, also
# when Docker's layer cache made the build a no-op.
# Timings are printed. Tags: $OPERATOR_IMAGE, $TRAINING_IMAGE, $TRAINING_CI_IMAGE.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
OPERATOR_IMAGE=${OPERATOR_IMAGE:-elasticjob-operator:dev}
TRAINING_IMAGE=${TRAINING_IMAGE:-elasticjob-training:dev}
TRAINING_CI_IMAGE=${TRAINING_CI_IMAGE:-elasticjob-training:ci}
docker=/usr/bin/docker
t0=$(date +%s)
bash "$root/hack/docker/ensure-dockerd.sh"
base=$(bash "$root/hack/docker/base-image.sh")
t1=$(date +%s)
# the CA bundle of the network the build runs on (this machine's), for pip inside the build
mkdir -p "$root/hack/docker/extra-ca"
if [ -n "${EXTRA_CA_CERTS:-}" ]; then
  cp "$EXTRA_CA_CERTS" "$root/hack/docker/extra-ca/extra.crt"
elif [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/hack/docker/extra-ca/host-bundle.crt"
fi
export DOCKER_BUILDKIT=0
for target in operator training training-ci; do
  case $target in operator) tag=$OPERATOR_IMAGE ;; training) tag=$TRAINING_IMAGE ;; *) tag=$TRAINING_CI_IMAGE ;; esac
  s=$(date +%s)
  "$docker" build --network host --build-arg "BASE_IMAGE=$base" --target "$target" -t "$tag" "$root" >&2
  echo "built $tag in $(( $(date +%s) - s ))s ($("$docker" image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
done
t2=$(date +%s)
# checks
if "$docker" run --rm --entrypoint python "$OPERATOR_IMAGE" -c "import torch" 2>/dev/null; then
  echo "FAIL: the operator image contains torch" >&2; exit 1
fi
"$docker" run --rm --read-only --tmpfs /tmp --user 65532:65532 "$OPERATOR_IMAGE" --help >/dev/null
test "$("$docker" run --rm --entrypoint id "$OPERATOR_IMAGE" -u)" = 65532
"$docker" run --rm --network none -v "$root/hack/docker/allreduce.py:/job/allreduce.py:ro" "$TRAINING_IMAGE" \
  elasticjob-launch --standalone --nproc-per-node 2 /job/allreduce.py
"$docker" run --rm --network none "$TRAINING_CI_IMAGE" python /ci/cpu-trim.py check /ci/train_cpu.py
echo "images: base $(( t1 - t0 ))s, builds $(( t2 - t1 ))s, checks $(( $(date +%s) - t2 ))s"

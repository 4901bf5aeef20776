#!/usr/bin/env bash
# First boot of a node: import the image tarballs under /kind/images (the control plane, pause,
# CoreDNS, kube-proxy and the CNI agent, built by hack/kind/build-node-image.sh) into containerd's
# k8s.io namespace, so nothing is ever pulled. A marker in /var (a volume per node) skips it on
# a restart.
set -euo pipefail
marker=/var/lib/kind-preloaded
[ -f "$marker" ] && exit 0
for _ in $(seq 1 30); do ctr version >/dev/null 2>&1 && break; sleep 1; done
for tar in /kind/images/*.tar; do
  ctr -n k8s.io images import "$tar" >&2
done
ctr -n k8s.io images ls -q >&2
touch "$marker"

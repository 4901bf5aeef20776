#!/usr/bin/env bash
# Build the kind node image for Kubernetes v1.35.4 without any container registry:
#   bash hack/kind/build-node-image.sh      -> prints the image name (elasticjob-kind-node:v1.35.4)
#
# What goes in (docs/kind.md has the why of each piece):
#   - a Debian bookworm rootfs made with debootstrap: systemd as init, Debian's containerd 1.6,
#     runc, iptables, the CNI plugins (containernetworking-plugins), conntrack, iproute2...;
#   - kubelet, kubeadm, kubectl in /usr/bin (hack/k8s/ensure.sh, hack/kind/ensure-binaries.sh),
#     the kubelet unit with kubeadm's drop-in, containerd's CRI config, runc-capshim;
#   - /kind/images/images.tar: the images kubeadm v1.35 asks for (kube-apiserver,
#     kube-controller-manager, kube-scheduler, kube-proxy :v1.35.4, etcd:3.6.6-0 holding the
#     etcd v3.6.16 binary of ensure.sh, coredns/coredns:v1.13.1, pause:3.10.1 = hack/kind/pause)
#     plus elasticjob.io/kind-cni, imported into containerd's k8s.io namespace at a node's first
#     boot; /kind/version, /kind/manifests/default-cni.yaml and default-storage.yaml for kind.
#     kube-proxy's image is built on a base rootfs ($BASE_PACKAGES), kind-cni's on a second one with
#     python3 and nftables too ($CNI_PACKAGES) for its NetworkPolicy enforcer kind-netpol, which
#     runs the local cluster's netpol.py (copied in with network.py, both standard library only).
# Each stage is cached in ${ELASTICJOB_CACHE:-~/.cache/elasticjob}/kind keyed by a hash of its
# inputs; the finished image is saved there too, so a fresh dockerd only `docker load`s it.
# Limits: linux/amd64, IPv4, Debian's containerd 1.6 (CRI v1, cgroup v1 and v2). Heavy steps run
# under `nice -n 19`. Logs go to stderr, stdout is only the image name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
K8S_VERSION=v1.35.4
ETCD_IMAGE_TAG=3.6.6-0     # the tag kubeadm v1.35 asks for; the binary inside is ensure.sh's etcd
COREDNS_VERSION=v1.13.1    # kubeadm v1.35's CoreDNSVersion
PAUSE_TAG=3.10.1           # kubeadm v1.35's PauseVersion
IMAGE=${ELASTICJOB_KIND_NODE_IMAGE:-elasticjob-kind-node:$K8S_VERSION}
NODE_PACKAGES=systemd,systemd-sysv,dbus,containerd,runc,iptables,containernetworking-plugins,conntrack,ethtool,socat,iproute2,procps,ca-certificates,kmod,util-linux,mount,libseccomp2,psmisc
BASE_PACKAGES=iptables,conntrack,iproute2,procps
# python3-minimal alone lacks json, dataclasses and shutil, which kind-netpol and netpol.py import
CNI_PACKAGES=$BASE_PACKAGES,python3-minimal,libpython3-stdlib,nftables
# the local cluster's NetworkPolicy compiler that kind-netpol runs, relative to $here
NETPOL_FILES=(../../localcluster/elasticjob_localcluster/__init__.py ../../localcluster/elasticjob_localcluster/netpol.py
  ../../localcluster/elasticjob_localcluster/network.py)
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
kcache=$cache/kind
docker=/usr/bin/docker
export DOCKER_BUILDKIT=0
log() { echo "build-node-image: $*" >&2; }
t0=$(date +%s)

bash "$root/hack/docker/ensure-dockerd.sh"
k8sbin=$(bash "$root/hack/k8s/ensure.sh")
kindbin=$(bash "$here/ensure-binaries.sh")
shim=$(bash "$here/capshim.sh")

hash_files() { (cd "$here" && find "$@" -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12; }
key=$( { echo "$K8S_VERSION $ETCD_IMAGE_TAG $COREDNS_VERSION $PAUSE_TAG $NODE_PACKAGES $BASE_PACKAGES $CNI_PACKAGES";
         echo "$k8sbin $kindbin $shim"; hash_files build-node-image.sh node cni pause runc-capshim "${NETPOL_FILES[@]}"; } |
       sha256sum | cut -c1-12)
tarball=$kcache/node-image-$key.tar
if [ "$("$docker" image inspect -f '{{index .Config.Labels "io.elasticjob.kind.key"}}' "$IMAGE" 2>/dev/null)" = "$key" ]; then
  log "$IMAGE is current (key $key)"; echo "$IMAGE"; exit 0
fi
mkdir -p "$kcache/debs"
exec 9>"$kcache/.lock"
flock 9
if [ -f "$tarball" ]; then
  log "loading $tarball"
  "$docker" load -i "$tarball" >&2
  log "done in $(( $(date +%s) - t0 ))s"; echo "$IMAGE"; exit 0
fi

work=$(mktemp -d "$kcache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

# debootstrap a rootfs once per package list; cached as a tarball. $1 name, $2 packages
rootfs_tar() {
  local name=$1 pkgs=$2 k tar dir
  k=$(echo "$name $pkgs $mirror v1" | sha256sum | cut -c1-12)
  tar=$kcache/rootfs-$name-$k.tar
  if [ ! -f "$tar" ]; then
    dir=$work/rootfs-$name
    log "debootstrap $name rootfs ($pkgs)"
    nice -n 19 debootstrap --variant=minbase --cache-dir="$kcache/debs" --include="$pkgs" \
      bookworm "$dir" "$mirror" >"$work/debootstrap-$name.log" 2>&1 \
      || { tail -20 "$work/debootstrap-$name.log" >&2; return 1; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc \
      "$dir"/usr/share/man "$dir"/usr/share/info "$dir"/usr/share/locale "$dir"/var/log/*.log
    nice -n 19 tar -C "$dir" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$dir"
  fi
  echo "$tar"
}
# docker import a rootfs tarball as an image (once)
import_rootfs() {
  local tar=$1 tag=$2
  "$docker" image inspect "$tag" >/dev/null 2>&1 || nice -n 19 "$docker" import "$tar" "$tag" >&2
}
# build an image from a context dir with a Dockerfile written by the caller
build() { nice -n 19 "$docker" build -q --network none -t "$2" "$1" >&2; }

# 1. the images kubeadm wants, preloaded into the node (one `docker save`, shared layers once)
base_tar=$(rootfs_tar base "$BASE_PACKAGES")
base_img=elasticjob-kind-base:$(basename "$base_tar" .tar | sed 's/^rootfs-base-//')
import_rootfs "$base_tar" "$base_img"
cni_tar=$(rootfs_tar cni "$CNI_PACKAGES")
cni_base=elasticjob-kind-cni-base:$(basename "$cni_tar" .tar | sed 's/^rootfs-cni-//')
import_rootfs "$cni_tar" "$cni_base"
cni_tag=$( { echo "$CNI_PACKAGES"; hash_files cni "${NETPOL_FILES[@]}"; } | sha256sum | cut -c1-8)
images=(
  "registry.k8s.io/kube-apiserver:$K8S_VERSION"
  "registry.k8s.io/kube-controller-manager:$K8S_VERSION"
  "registry.k8s.io/kube-scheduler:$K8S_VERSION"
  "registry.k8s.io/kube-proxy:$K8S_VERSION"
  "registry.k8s.io/etcd:$ETCD_IMAGE_TAG"
  "registry.k8s.io/coredns/coredns:$COREDNS_VERSION"
  "registry.k8s.io/pause:$PAUSE_TAG"
  "elasticjob.io/kind-cni:$cni_tag"
)
log "building ${#images[@]} component images"
nice -n 19 gcc -Os -s -static -o "$work/pause" "$here/pause/pause.c"
scratch_image() { # $1 tag, $2 binary path, $3 in-image path, $4 entrypoint JSON or ""
  local ctx; ctx=$(mktemp -d "$work/ctx.XXXXXX")
  cp "$2" "$ctx/bin"
  { echo "FROM scratch"; echo "COPY bin $3"; echo "ENV PATH=/usr/local/bin:/usr/bin:/bin"
    [ -z "$4" ] || echo "ENTRYPOINT $4"; } >"$ctx/Dockerfile"
  build "$ctx" "$1"
}
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  scratch_image "registry.k8s.io/$c:$K8S_VERSION" "$k8sbin/$c" "/usr/local/bin/$c" ""
done
scratch_image "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "$k8sbin/etcd" /usr/local/bin/etcd ""
scratch_image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "$kindbin/coredns" /coredns '["/coredns"]'
scratch_image "registry.k8s.io/pause:$PAUSE_TAG" "$work/pause" /pause '["/pause"]'
ctx=$work/ctx-proxy; mkdir -p "$ctx"; cp "$kindbin/kube-proxy" "$ctx/"
printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\n' "$base_img" >"$ctx/Dockerfile"
build "$ctx" "registry.k8s.io/kube-proxy:$K8S_VERSION"
ctx=$work/ctx-cni; mkdir -p "$ctx/lib/elasticjob_localcluster"
cp "$k8sbin/kubectl" "$here/cni/kind-cni" "$here/cni/kind-netpol" "$ctx/"
(cd "$here" && cp "${NETPOL_FILES[@]}" "$ctx/lib/elasticjob_localcluster/")
printf 'FROM %s\nCOPY kubectl kind-cni kind-netpol /usr/local/bin/\nCOPY lib/ /usr/local/lib/kind-netpol/\nENV PYTHONPATH=/usr/local/lib/kind-netpol\n' \
  "$cni_base" >"$ctx/Dockerfile"
build "$ctx" "elasticjob.io/kind-cni:$cni_tag"

# 2. the node's rootfs and everything on top of it
node_tar=$(rootfs_tar node "$NODE_PACKAGES")
node_base=elasticjob-kind-rootfs:$(basename "$node_tar" .tar | sed 's/^rootfs-node-//')
import_rootfs "$node_tar" "$node_base"
ctx=$work/ctx-node; mkdir -p "$ctx/root"
cp -a "$here/node/." "$ctx/root/"
mkdir -p "$ctx/root/usr/bin" "$ctx/root/usr/local/sbin" "$ctx/root/kind/images" \
  "$ctx/root/etc/systemd/system/multi-user.target.wants" "$ctx/root/etc/cni/net.d"
cp "$kindbin/kubelet" "$kindbin/kubeadm" "$k8sbin/kubectl" "$ctx/root/usr/bin/"
cp "$shim" "$ctx/root/usr/local/sbin/runc-capshim"
echo "$K8S_VERSION" >"$ctx/root/kind/version"
sed -i "s/__CNI_TAG__/$cni_tag/" "$ctx/root/kind/manifests/default-cni.yaml"
: >"$ctx/root/etc/machine-id"
for unit in kubelet.service kind-preload-images.service; do
  ln -sf "/etc/systemd/system/$unit" "$ctx/root/etc/systemd/system/multi-user.target.wants/$unit"
done
ln -sf /lib/systemd/system/containerd.service "$ctx/root/etc/systemd/system/multi-user.target.wants/containerd.service"
# units that would touch the whole machine from a privileged container, or are useless in one
for unit in systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  proc-sys-fs-binfmt_misc.mount systemd-modules-load.service getty.target console-getty.service \
  getty@tty1.service serial-getty@.service sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-kernel-config.mount sys-fs-fuse-connections.mount systemd-journald-audit.socket \
  systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
  fstrim.timer e2scrub_all.timer e2scrub_reap.service systemd-remount-fs.service \
  systemd-pstore.service; do
  ln -sf /dev/null "$ctx/root/etc/systemd/system/$unit"
done
log "saving the component images"
nice -n 19 "$docker" save -o "$ctx/root/kind/images/images.tar" "${images[@]}"
cat >"$ctx/Dockerfile" <<EOF
FROM $node_base
COPY root/ /
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL io.elasticjob.kind.key=$key io.elasticjob.kind.kubernetes=$K8S_VERSION
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
log "building $IMAGE"
build "$ctx" "$IMAGE"
log "saving $tarball"
rm -f "$kcache"/node-image-*.tar
nice -n 19 "$docker" save -o "$tarball.tmp" "$IMAGE" && mv "$tarball.tmp" "$tarball"
log "done in $(( $(date +%s) - t0 ))s ($("$docker" image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
echo "$IMAGE"

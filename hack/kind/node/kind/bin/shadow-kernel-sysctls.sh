#!/usr/bin/env bash
# Run before kubelet (ExecStartPre). kubelet checks six kernel-global sysctls at start and, with
# protectKernelDefaults: false, writes its values into them - which from a privileged kind node
# would change the whole machine (kernel.panic, kernel.panic_on_oops, vm.overcommit_memory...).
# The cluster config sets protectKernelDefaults: true (kubelet only reads them and fails if they
# differ) and this script bind-mounts a read-only file holding kubelet's expected value over each
# one that differs, in this node's mount namespace only. The machine's values are never written.
set -euo pipefail
dir=/run/kind-sysctl-shadow
mkdir -p "$dir"
while read -r key want; do
  path=/proc/sys/${key//./\/}
  [ -e "$path" ] || continue
  findmnt -rn "$path" >/dev/null && continue
  have=$(cat "$path")
  [ "$have" = "$want" ] && continue
  echo "$want" >"$dir/$key"
  mount --bind "$dir/$key" "$path"
  mount -o remount,bind,ro "$path"
  echo "shadow-kernel-sysctls: $key reads $want in this node (the machine keeps $have)" >&2
done <<'VALUES'
vm.overcommit_memory 1
vm.panic_on_oom 0
kernel.panic 10
kernel.panic_on_oops 1
kernel.keys.root_maxkeys 1000000
kernel.keys.root_maxbytes 25000000
VALUES

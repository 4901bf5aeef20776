#!/usr/bin/env bash
# Smoke test of a cluster made by hack/kind/up.sh: one pod per worker (the preloaded kind-cni
# image, nothing pulled) checks cluster DNS, DNS of outside names through docker's embedded DNS,
# pod-to-pod traffic to a CoreDNS pod on another node, and the kubernetes Service via kube-proxy.
# Prints one line per pod and exits non-zero on the first failure; removes its pods.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=${ELASTICJOB_KIND_CLUSTER:-elasticjob}
cache=${ELASTICJOB_CACHE:-$HOME/.cache/elasticjob}
export KUBECONFIG=${ELASTICJOB_KIND_KUBECONFIG:-$cache/kind/kubeconfig-$name}
kubectl="$(bash "$here/../k8s/ensure.sh")/kubectl"
image=$("$kubectl" -n kube-system get ds kind-cni -o jsonpath='{.spec.template.spec.containers[0].image}')
dns_ip=$("$kubectl" -n kube-system get pods -l k8s-app=kube-dns -o jsonpath='{.items[0].status.podIP}')
"$kubectl" delete pod -l app=kind-smoke --ignore-not-found >/dev/null
trap '"$kubectl" delete pod -l app=kind-smoke --wait=false >/dev/null 2>&1 || true' EXIT
workers=$("$kubectl" get nodes -l '!node-role.kubernetes.io/control-plane' -o name | sed 's|node/||')
[ -n "$workers" ] || workers=$("$kubectl" get nodes -o name | sed 's|node/||')
i=0
for w in $workers; do
  i=$((i + 1))
  "$kubectl" run "kind-smoke-$i" -l app=kind-smoke --image="$image" --image-pull-policy=Never \
    --restart=Never --overrides="{\"spec\":{\"nodeName\":\"$w\",\"terminationGracePeriodSeconds\":0}}" --command -- sleep 600 >/dev/null
done
"$kubectl" wait --for=condition=Ready pod -l app=kind-smoke --timeout=120s >/dev/null
for p in $("$kubectl" get pods -l app=kind-smoke -o name); do
  "$kubectl" exec "$p" -- bash -euc '
    getent hosts kubernetes.default.svc.cluster.local >/dev/null || { echo "cluster DNS failed"; exit 1; }
    getent hosts deb.debian.org >/dev/null || { echo "outside DNS failed"; exit 1; }
    exec 3<>/dev/tcp/'"$dns_ip"'/8080; printf "GET /health HTTP/1.0\r\n\r\n" >&3
    grep -q OK <&3 || { echo "pod-to-pod to CoreDNS '"$dns_ip"' failed"; exit 1; }
    timeout 5 bash -c "exec 4<>/dev/tcp/kubernetes.default.svc.cluster.local/443" || { echo "Service failed"; exit 1; }
    echo "cluster DNS, outside DNS, pod-to-pod (CoreDNS '"$dns_ip"'), Service: ok"' \
    | sed "s|^|$p on $("$kubectl" get "$p" -o jsonpath='{.spec.nodeName}'): |"
done

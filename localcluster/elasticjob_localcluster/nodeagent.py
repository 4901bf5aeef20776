"""The node agent: registers fake Nodes, keeps them alive, and runs the pods bound to them.

One process serves every fake node of the cluster (`python -m elasticjob_localcluster agent`).
Each loop it lists pods and Services, starts a `PodRunner` for each new pod bound to one of its
nodes, passes deletions on, answers cluster DNS from the pods it runs, serves the kubelet API
for `kubectl logs` (`kubeletapi`), enforces NetworkPolicies in the pod network (`netpol`),
renews each node's Lease and Ready condition, and obeys fault files: `<state>/nodes/<node>/lost`
makes that node stop its heartbeats and SIGKILL its pods' processes at once, until the file is removed; then the node's
pods that lost their processes report Failed (reason NodeLost), as after a reboot.
Limits: polling (0.5 s) rather than watches, sized for tests and the demo; simulate-mode nodes
report pods Running without running them (for scale benchmarks).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from elasticjob_localcluster import kubeletapi, netpol, network
from elasticjob_localcluster.dns import DnsServer
from elasticjob_localcluster.podrunner import PodRunner
from elasticjob_localcluster.podspec import Settings

log = logging.getLogger(__name__)
HEARTBEAT = 5.0
SIMULATED_TAINT = "elasticjob.io/simulated"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu: str = "4"
    memory: str = "16Gi"
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    #: pods go Running without running anything (scale benchmarks); such nodes are tainted
    #: `elasticjob.io/simulated=true:NoSchedule` so only pods that tolerate it land there
    simulate: bool = False
    #: the node's pod capacity (a kubelet's --max-pods)
    max_pods: int = 110


def raw_items(response: Any) -> list[dict[str, Any]]:
    """The items of a list call made with `_preload_content=False` (its raw HTTP response)."""
    return list(json.loads(response.data)["items"])


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeAgent:
    def __init__(self, state: Path, nodes: list[NodeSpec], api_port: int) -> None:
        self.state = state
        self.nodes = {n.name: n for n in nodes}
        config.load_kube_config(str(state / "kubeconfig"))
        self.core = client.CoreV1Api()
        self.coord = client.CoordinationV1Api()
        self.authz = client.AuthorizationV1Api()
        self.networking = client.NetworkingV1Api()
        self.enforcer = netpol.Enforcer(netpol.LOCAL_NFT, first_load=lambda: netpol.set_bridge_netfilter(True))
        self.runners: dict[str, PodRunner] = {}
        self.pods: list[dict[str, Any]] = []
        self.services: list[dict[str, Any]] = []
        self.next_ip = int(ipaddress.ip_address(network.GATEWAY)) + 256
        self.last_beat: dict[str, float] = {}
        self.stop = threading.Event()
        bin_dir = str(Path(sys.executable).parent)
        self.settings = Settings(state=state, api_host=network.GATEWAY, api_port=api_port, path_prefix=bin_dir)

    # --- nodes ----------------------------------------------------------------------------

    def lost(self, node: str) -> bool:
        return (self.state / "nodes" / node / "lost").exists()

    def register(self) -> None:
        for spec in self.nodes.values():
            capacity = {"cpu": spec.cpu, "memory": spec.memory, "pods": str(spec.max_pods)}
            if spec.gpus:
                capacity["nvidia.com/gpu"] = str(spec.gpus)
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": spec.name,
                    "labels": {"kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux", **spec.labels},
                },
                "status": {"capacity": capacity, "allocatable": capacity},
            }
            if spec.simulate:
                body["spec"] = {"taints": [{"key": SIMULATED_TAINT, "value": "true", "effect": "NoSchedule"}]}
            try:
                self.core.create_node(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
            self.core.patch_node_status(spec.name, {"status": {"capacity": capacity, "allocatable": capacity}})
            self.heartbeat(spec.name)

    def heartbeat(self, node: str) -> None:
        stamp = now()
        ready = {
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "elasticjob node agent",
            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
        }  # fmt: skip
        try:
            current = self.core.read_node_status(node)
            for cond in (current.status.conditions if current.status else None) or []:
                if cond.type == "Ready" and cond.status == "True" and cond.last_transition_time:
                    ready["lastTransitionTime"] = cond.last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ")
            status = {
                "conditions": [ready],
                "addresses": [{"type": "InternalIP", "address": network.GATEWAY}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": kubeletapi.PORT}},
            }
            self.core.patch_node_status(node, {"status": status})
            lease = {
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": micro_now()},
            }
            try:
                self.coord.patch_namespaced_lease(node, "kube-node-lease", lease)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.coord.create_namespaced_lease("kube-node-lease", lease)
        except ApiException as exc:
            log.warning("heartbeat of %s: %s", node, exc.reason)
        self.last_beat[node] = time.monotonic()

    # --- DNS ------------------------------------------------------------------------------

    def lookup(self, namespace: str, service: str) -> list[str]:
        svc = next(
            (s for s in self.services if s["metadata"]["namespace"] == namespace and s["metadata"]["name"] == service),
            None,
        )
        if svc is None:
            return []
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            return []
        ips = []
        for pod in self.pods:
            labels = pod["metadata"].get("labels") or {}
            status = pod.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            if (
                pod["metadata"]["namespace"] == namespace
                and all(labels.get(k) == v for k, v in selector.items())
                and ready
                and status.get("podIP")
                and not pod["metadata"].get("deletionTimestamp")
            ):
                ips.append(status["podIP"])
        return sorted(ips)

    # --- the kubelet API -------------------------------------------------------------------

    def find_pod(self, namespace: str, name: str) -> kubeletapi.PodRef | None:
        for pod in self.pods:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            if meta["namespace"] == namespace and meta["name"] == name and spec.get("nodeName") in self.nodes:
                names = [c["name"] for c in [*(spec.get("initContainers") or []), *spec["containers"]]]
                return kubeletapi.PodRef(spec["nodeName"], meta["uid"], tuple(names))
        return None

    def writing(self, uid: str, container: str, restart: int) -> bool:
        runner = self.runners.get(uid)
        return runner is not None and runner.writing(container, restart)

    def kubelet_server(self) -> kubeletapi.KubeletServer:
        backend = kubeletapi.Backend(
            state=self.state,
            find_pod=self.find_pod,
            running=self.writing,
            allowed=kubeletapi.AuthzCache(kubeletapi.subject_access_review(self.authz)),
        )
        return kubeletapi.KubeletServer((network.GATEWAY, kubeletapi.PORT), backend, self.state / "pki")

    # --- pods -----------------------------------------------------------------------------

    def _alloc_ip(self) -> str:
        ip = str(ipaddress.ip_address(self.next_ip))
        self.next_ip += 1
        return ip

    def sync(self) -> None:
        # plain JSON: the typed client's model round trip costs seconds at thousands of pods
        pods = raw_items(self.core.list_pod_for_all_namespaces(_preload_content=False))
        self.services = raw_items(self.core.list_service_for_all_namespaces(_preload_content=False))
        self.pods = pods
        seen = set()
        new: list[PodRunner] = []
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node not in self.nodes:
                continue
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            runner = self.runners.get(uid)
            if runner is None:
                if pod["metadata"].get("deletionTimestamp") or self.lost(node):
                    if not self.lost(node):  # never started here: just confirm the deletion
                        self.core.delete_namespaced_pod(
                            pod["metadata"]["name"], pod["metadata"]["namespace"],
                            body=client.V1DeleteOptions(grace_period_seconds=0),
                        )  # fmt: skip
                    continue
                settings = self.settings
                if self.nodes[node].simulate:
                    settings = Settings(**{**asdict(settings), "simulate": True})
                runner = PodRunner(self.core, pod, self._alloc_ip(), settings)
                self.runners[uid] = runner
                new.append(runner)
            runner.pod["metadata"] = pod["metadata"]
            if pod["metadata"].get("deletionTimestamp"):
                runner.delete_requested.set()
            if self.lost(node):
                runner.lost.set()
            else:
                runner.lost.clear()
        self.enforce()  # before new pods start, so their first packets already meet the policies
        for runner in new:
            runner.start()
        for uid, runner in list(self.runners.items()):
            if uid not in seen:
                runner.gone.set()  # the object is gone (force-deleted): stop at once
                runner.delete_requested.set()
            if runner.finished.is_set():
                del self.runners[uid]

    def enforce(self) -> None:
        """The NetworkPolicies, over the pods this agent runs (their addresses are its own)."""
        policies = raw_items(self.networking.list_network_policy_for_all_namespaces(_preload_content=False))
        if not policies and self.enforcer.loaded is None:
            return  # nothing to enforce yet: the pod network stays as it started
        namespaces = {
            ns["metadata"]["name"]: ns["metadata"].get("labels") or {}
            for ns in raw_items(self.core.list_namespace(_preload_content=False))
        }
        pods = [netpol.pod_from_api(r.pod, r.ip) for r in self.runners.values() if not r.settings.simulate]
        try:
            self.enforcer.apply(netpol.compile_ingress(policies, pods, namespaces), netpol.LOCAL_TRUSTED)
        except subprocess.CalledProcessError as exc:  # a rule nft refused: said, and tried again next loop
            log.error("nft refused the NetworkPolicy table: %s", exc.stderr)

    def run(self) -> None:
        dns = DnsServer(network.GATEWAY, self.lookup)
        dns.start()
        kubelet = self.kubelet_server()
        kubelet.start()
        self.register()
        (self.state / "agent.ready").write_text("1")
        while not self.stop.is_set():
            try:
                self.sync()
            except (ApiException, OSError) as exc:
                log.warning("sync: %s", exc)
            for node in self.nodes:
                if not self.lost(node) and time.monotonic() - self.last_beat.get(node, 0) >= HEARTBEAT:
                    self.heartbeat(node)
            self.stop.wait(0.5)
        for runner in self.runners.values():
            runner.delete_requested.set()
        for runner in self.runners.values():
            runner.finished.wait(40)
        dns.close()
        kubelet.shutdown()
        kubelet.server_close()


def main(state: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = json.loads((state / "cluster.json").read_text())
    agent = NodeAgent(state, [NodeSpec(**n) for n in cfg["nodes"]], cfg["api_port"])

    def _stop(signum: int, frame: object) -> None:
        agent.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    agent.run()
    return 0

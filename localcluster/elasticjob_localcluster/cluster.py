"""Start and stop the local control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler (real binaries from hack/k8s/ensure.sh) and the node agent.

`Cluster(state_dir, nodes).start()` returns when every component's health endpoint answers and
the nodes are Ready; it writes `<state>/kubeconfig`. The API server calls Services (webhooks,
aggregated APIs) at their ready endpoints' pod IPs, since nothing routes ClusterIPs. `stop()`
(also from another process, via the pid files) stops everything and removes the pod network,
leaving no process, namespace or mount.
Limits: one cluster per machine at a time (fixed ports and the bridge name); root is needed for
network namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from types import TracebackType

from elasticjob_localcluster import network, procs
from elasticjob_localcluster.nodeagent import NodeSpec
from elasticjob_localcluster.pki import make_pki

REPO = Path(__file__).resolve().parents[2]
API_PORT = 6443
ETCD_PORT = 23790
DEFAULT_NODES = [
    NodeSpec("node-1", cpu="8", memory="16Gi"),
    NodeSpec("node-2", cpu="8", memory="16Gi"),
    NodeSpec("node-3", cpu="8", memory="16Gi", gpus=2, labels={"elasticjob.io/gpu": "true"}),
    NodeSpec("sim-1", cpu="64", memory="256Gi", simulate=True),
]
#: kube-scheduler's own gang scheduling (Workload API, alpha in 1.35), on the apiserver and the scheduler
GANG_GATES = "GenericWorkload=true,GangScheduling=true"
COMPONENTS = ["node-agent", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]


def default_state_dir() -> Path:
    return Path(os.environ.get("ELASTICJOB_CLUSTER_DIR", REPO / ".cluster"))


def k8s_bin_dir() -> Path:
    env = os.environ.get("ELASTICJOB_K8S_BIN")
    if env:
        return Path(env)
    # ensure.sh prints one line per component it builds (a new machine builds them once, about 12
    # minutes on 2 cores, then reuses its cache)
    return run_ensure(REPO / "hack/k8s/ensure.sh")


def run_ensure(script: Path) -> Path:
    """Run one of hack/*/ensure.sh (build once, cached by version) and return the directory it prints;
    its progress lines are passed on to stderr with the time since the start."""
    start = time.monotonic()
    with subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stderr or ():
            print(f"[{time.monotonic() - start:4.0f}s] {line.rstrip()}", file=sys.stderr, flush=True)
        out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, out)
    return Path(out.strip())


def _kubeconfig(state: Path, name: str) -> Path:
    pki = state / "pki"
    path = state / name
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": f"https://127.0.0.1:{API_PORT}",
                            "certificate-authority": str(pki / "ca.crt"),
                        },
                    }
                ],
                "users": [
                    {
                        "name": "admin",
                        "user": {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")},
                    }
                ],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
                "current-context": "local",
            },
            indent=2,
        )
    )
    return path


class Cluster:
    """`extra_args` adds flags to a component by name (e.g. a scale benchmark's scheduler QPS)."""

    def __init__(
        self,
        state: Path | None = None,
        nodes: list[NodeSpec] | None = None,
        extra_args: dict[str, list[str]] | None = None,
    ) -> None:
        self.state = (state or default_state_dir()).resolve()
        self.nodes = nodes or DEFAULT_NODES
        self.extra_args = extra_args or {}
        binaries = COMPONENTS[1:]  # the node agent takes no flags
        unknown = set(self.extra_args) - set(binaries)
        if unknown:
            raise ValueError(f"extra_args for unknown components {sorted(unknown)}: choose from {binaries}")
        self.bin: Path | None = None

    def _start(self, name: str, argv: list[str]) -> None:
        procs.start(self.state, name, [*argv, *self.extra_args.get(name, [])])

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # --- start ----------------------------------------------------------------------------

    def _wait(self, what: str, url: str, timeout: float = 120) -> None:
        pki = self.state / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt")) if url.startswith("https") else None
        if ctx is not None and "6443" in url:
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        if ctx is not None and "6443" not in url:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=3, context=ctx) as r:  # noqa: S310 (local endpoints)
                    if r.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.3)
        raise RuntimeError(f"{what} not healthy after {timeout}s ({last}); see {self.state}/logs/")

    def start(self) -> Cluster:
        if procs.running(self.state):
            raise RuntimeError(f"a cluster is already running from {self.state}: stop it first")
        self.bin = k8s_bin_dir()
        state, pki, b = self.state, self.state / "pki", self.bin
        state.mkdir(parents=True, exist_ok=True)
        (state / "cluster.json").write_text(
            json.dumps({"nodes": [asdict(n) for n in self.nodes], "api_port": API_PORT})
        )
        (state / "agent.ready").unlink(missing_ok=True)
        network.ensure_nft()
        network.setup_bridge()
        make_pki(pki, ["127.0.0.1", network.GATEWAY, "10.96.0.1"], network.GATEWAY)
        kubeconfig = _kubeconfig(state, "kubeconfig")
        shutil.rmtree(state / "etcd", ignore_errors=True)
        self._start("etcd", [
            str(b / "etcd"), "--data-dir", str(state / "etcd"), "--name", "local",
            "--listen-client-urls", f"http://127.0.0.1:{ETCD_PORT}", "--advertise-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
            "--listen-peer-urls", "http://127.0.0.1:23800", "--initial-advertise-peer-urls", "http://127.0.0.1:23800",
            "--initial-cluster", "local=http://127.0.0.1:23800", "--unsafe-no-fsync", "--log-level", "warn",
        ])  # fmt: skip
        self._wait("etcd", f"http://127.0.0.1:{ETCD_PORT}/health")
        self._start("kube-apiserver", [
            str(b / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
            "--bind-address=0.0.0.0", f"--secure-port={API_PORT}", f"--advertise-address={network.GATEWAY}",
            f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={pki}/ca.crt", "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki}/sa.pub", f"--service-account-signing-key-file={pki}/sa.key",
            "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=true", "--profiling=false",
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            f"--kubelet-certificate-authority={pki}/ca.crt", "--kubelet-preferred-address-types=InternalIP",
            "--event-ttl=1h", f"--feature-gates={GANG_GATES}", "--runtime-config=scheduling.k8s.io/v1alpha1=true",
            # a Service's ready endpoint IPs, not its ClusterIP, for admission webhooks, CRD conversion
            # and aggregated APIs (there is no kube-proxy; pod IPs route through network.HOST_IF)
            "--enable-aggregator-routing=true", "--v=1",
        ])  # fmt: skip
        self._wait("kube-apiserver", f"https://127.0.0.1:{API_PORT}/readyz")
        self._start("kube-controller-manager", [
            str(b / "kube-controller-manager"), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", "--secure-port=10257", "--leader-elect=false",
            f"--service-account-private-key-file={pki}/sa.key", f"--root-ca-file={pki}/ca.crt",
            "--use-service-account-credentials=true", f"--cluster-signing-cert-file={pki}/ca.crt",
            f"--cluster-signing-key-file={pki}/ca.key", "--node-monitor-grace-period=20s",
            "--node-monitor-period=2s", "--controllers=*", "--profiling=false", "--v=1",
        ])  # fmt: skip
        self._start("kube-scheduler", [
            str(b / "kube-scheduler"), f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", "--secure-port=10259",
            "--leader-elect=false", "--profiling=false", f"--feature-gates={GANG_GATES}", "--v=1",
        ])  # fmt: skip
        self._wait("kube-controller-manager", "https://127.0.0.1:10257/healthz")
        self._wait("kube-scheduler", "https://127.0.0.1:10259/healthz")
        Path("/dev/termination-log").touch(exist_ok=True)
        import sys

        procs.start(
            state, "node-agent", [sys.executable, "-m", "elasticjob_localcluster", "agent", "--state", str(state)]
        )
        deadline = time.monotonic() + 60
        while not (state / "agent.ready").exists():
            if time.monotonic() > deadline or "node-agent" not in procs.running(state):
                raise RuntimeError(f"the node agent did not start; see {state}/logs/node-agent.log")
            time.sleep(0.2)
        self.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
        self._wait_default_service_account()
        return self

    def _wait_default_service_account(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError("the default ServiceAccount was never created")

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        b = self.bin or k8s_bin_dir()
        return subprocess.run(
            [str(b / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args], check=check, capture_output=True, text=True
        )

    # --- faults ---------------------------------------------------------------------------

    def lose_node(self, node: str) -> None:
        d = self.state / "nodes" / node
        d.mkdir(parents=True, exist_ok=True)
        (d / "lost").write_text("1")

    def restore_node(self, node: str) -> None:
        (self.state / "nodes" / node / "lost").unlink(missing_ok=True)

    # --- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        for name in COMPONENTS:
            procs.stop(self.state, name, grace=45 if name == "node-agent" else 10)
        network.teardown()
        shutil.rmtree(self.state / "etcd", ignore_errors=True)
        shutil.rmtree(self.state / "nodes", ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What a stopped cluster left behind (should be nothing)."""
        found = [f"process {p}" for p in procs.running(self.state)]
        found += network.leftovers()
        with open("/proc/self/mountinfo") as f:
            found += [f"mount {line.split()[4]}" for line in f if str(self.state) in line or "/run/netns/ej-" in line]
        return found

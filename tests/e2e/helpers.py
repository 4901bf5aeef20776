"""Cluster-agnostic helpers of the e2e suite: kubectl and helm with the suite's KUBECONFIG, JSON
results, and waits that print the job's story (status, Events, pod logs) when they time out."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
#: the Docker client that drives kind's node containers (the one of hack/docker, else from PATH)
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"

#: finds a pod's training process by its environment (pod, namespace, LOCAL_RANK) and SIGKILLs it
# a worker of the pod: exec'd ones carry LOCAL_RANK in their environment; preloaded ones are forks
# (the forkserver's environment) named ej-worker-<local rank> (elasticjob_launcher/worker.py)
KILL_WORKER = """
import os, signal, sys
pod = {f"ELASTICJOB_POD_NAME={sys.argv[1]}", f"ELASTICJOB_NAMESPACE={sys.argv[2]}"}
rank, name = f"LOCAL_RANK={sys.argv[3]}", f"ej-worker-{sys.argv[3]}"
hit = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = set(f.read().decode(errors="replace").split("\\0"))
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().strip()
    except OSError:
        continue
    if pod <= env and (rank in env or comm == name):
        os.kill(int(pid), signal.SIGKILL)
        hit += 1
print(hit)
"""


@dataclass
class Kube:
    kubeconfig: Path
    bin_dir: Path
    #: the local cluster's state directory (None on another cluster): its node agent's fault files,
    #: and the mark that pods are host processes
    cluster_state: Path | None = None
    #: the kind cluster the suite runs on (ELASTICJOB_E2E_KIND): a node is lost by killing its container
    kind_cluster: str | None = None
    #: extended resources (nvidia.com/gpu) of kind nodes lost by `lose_node`, put back on restore
    _kind_lost: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def apply(
        self, objects: list[dict[str, Any]] | str, namespace: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        text = objects if isinstance(objects, str) else yaml.safe_dump_all(objects)
        return self.run("apply", "-n", namespace, "-f", "-", input=text, check=check)

    def with_token(self, token: str, path: Path) -> Kube:
        """The same cluster, authenticated only by a bearer token (no client certificate)."""
        config = yaml.safe_load(self.run("config", "view", "--raw", "--minify").stdout)
        config["users"] = [{"name": "token", "user": {"token": token}}]
        config["contexts"][0]["context"]["user"] = "token"
        path.write_text(yaml.safe_dump(config))
        return dataclasses.replace(self, kubeconfig=path)

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "helm"), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=True,
        )

    def pod_log(self, namespace: str, pod: str, container: str = "trainer", previous: bool = False) -> str:
        """`kubectl logs` of a container; `previous`: of its last terminated instance (empty if none)."""
        extra = ["--previous"] if previous else []
        return self.run("logs", "-n", namespace, pod, "-c", container, *extra, check=False).stdout

    def kill_worker(self, namespace: str, pod: str, local_rank: int) -> int:
        """SIGKILL the training process of `local_rank` in `pod`; returns how many processes were hit.

        On the local cluster pods are host processes, found by their environment; elsewhere the
        same finder runs inside the trainer container through `kubectl exec`.
        """
        args = [pod, namespace, str(local_rank)]
        if self.cluster_state is not None:
            out = subprocess.run(
                [sys.executable, "-c", KILL_WORKER, *args], capture_output=True, text=True, check=True
            ).stdout
        else:
            out = self.run(
                "exec", "-n", namespace, pod, "-c", "trainer", "--", "python", "-c", KILL_WORKER, *args
            ).stdout
        return int(out.strip() or 0)

    def _node_fault_file(self, node: str) -> Path:
        if self.cluster_state is None:
            raise AssertionError("losing a node needs the local cluster's node agent")
        return self.cluster_state / "nodes" / node / "lost"

    def lose_node(self, node: str) -> None:
        """The node stops its heartbeats and its pods' processes die at once, as on a power loss."""
        if self.kind_cluster is not None:
            self._kind_lose_node(node)
            return
        path = self._node_fault_file(node)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("1")

    def restore_node(self, node: str) -> None:
        if self.kind_cluster is not None:
            self._kind_restore_node(node)
            return
        self._node_fault_file(node).unlink(missing_ok=True)

    def signal_pod(self, namespace: str, pod: str, sig: int) -> int:
        """Send `sig` to the processes of `pod` (SIGSTOP: a hung pod); returns how many were hit.

        On the local cluster they are the processes in its containers' mount namespaces, which its
        node agent records (`mountns.pod_pids`). On kind they are found inside the pod's node
        container, which sees its containers' processes, by the POD_NAME/POD_NAMESPACE their
        manifest puts in their environment.
        """
        if self.cluster_state is not None:
            from elasticjob_localcluster.mountns import pod_pids

            pids = pod_pids(self.cluster_state, namespace, pod)
            for pid in pids:
                os.kill(pid, sig)
            return len(pids)
        node = self._kind_container(self.json("get", "pod", pod, "-n", namespace)["spec"]["nodeName"])
        # the node container sees its containers' processes: the same environment scan, in there
        script = (
            'for p in /proc/[0-9]*; do e=$(tr "\\0" "\\n" 2>/dev/null < $p/environ) 2>/dev/null || continue; '
            'echo "$e" | grep -qx "POD_NAME=$1" && echo "$e" | grep -qx "POD_NAMESPACE=$2" && kill -$3 ${p#/proc/} '
            "&& echo hit; done; true"
        )
        out = subprocess.run([DOCKER, "exec", node, "sh", "-c", script, "sh", pod, namespace, str(int(sig))],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return out.split().count("hit")

    # --- kind: a node is a docker container named in the Node's providerID -----------------------

    def _kind_container(self, node: str) -> str:
        """The docker container of `node`: kind sets providerID kind://docker/<cluster>/<container>."""
        provider = self.json("get", "node", node)["spec"].get("providerID", "")
        prefix = f"kind://docker/{self.kind_cluster}/"
        if not provider.startswith(prefix):
            raise AssertionError(
                f"node {node} (providerID {provider!r}) is not a node of kind cluster {self.kind_cluster}"
            )
        return str(provider[len(prefix) :])

    def _docker(self, *args: str) -> None:
        result = subprocess.run([DOCKER, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")

    def _kind_lose_node(self, node: str) -> None:
        """SIGKILL the node container's init: kubelet, containerd and every pod process die at once."""
        capacity = self.json("get", "node", node)["status"].get("capacity", {})
        self._kind_lost[node] = {k: v for k, v in capacity.items() if "/" in k and "kubernetes.io/" not in k}
        self._docker("kill", self._kind_container(node))

    def _kind_restore_node(self, node: str) -> None:
        """Start the node container again and wait until its kubelet reports Ready.

        A restarted kubelet without device plugins zeroes the node's extended resources when it
        registers again, so the ones it had when it was lost (the advertised GPUs) are put back.
        """
        container = self._kind_container(node)
        since = datetime.now(UTC).replace(microsecond=0)
        self._docker("start", container)

        def ready_again() -> bool:
            conds = self.json("get", "node", node)["status"].get("conditions", [])
            ready: dict[str, str] = next((c for c in conds if c["type"] == "Ready"), {})
            beat = datetime.fromisoformat(ready.get("lastHeartbeatTime", "1970-01-01T00:00:00Z"))
            return ready.get("status") == "True" and beat >= since

        wait_for(ready_again, 180, f"node {node} to be Ready again", lambda: self.run("describe", "node", node).stdout)
        lost = self._kind_lost.pop(node, {})
        if lost:
            patch = {"status": {"capacity": lost, "allocatable": lost}}
            self.run("patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps(patch))

    def story(self, namespace: str) -> str:
        """The namespace's jobs, pods, Events and pod logs, for failure messages."""
        parts = []
        jobs = self.run("get", "ej", "-n", namespace, "-o", "json", check=False)  # no CRD on a bare cluster
        for job in json.loads(jobs.stdout)["items"] if jobs.returncode == 0 else []:
            parts.append(f"job {job['metadata']['name']}: {json.dumps(job.get('status'), indent=1)}")
        events = self.json("get", "events", "-n", namespace)["items"]
        parts += [
            f"event {e.get('involvedObject', {}).get('name')}: {e.get('reason')}: {e.get('message')}" for e in events
        ]
        for pod in self.json("get", "pods", "-n", namespace)["items"]:
            name = pod["metadata"]["name"]
            parts.append(f"pod {name}: {pod.get('status', {}).get('phase')}")
            for c in pod["spec"]["containers"]:
                parts.append(f"--- log {name}/{c['name']}\n{self.pod_log(namespace, name, c['name'])[-3000:]}")
        return "\n".join(parts)


#: the chart's Lease and metrics port for the release the e2e suite installs (conftest.operator)
OPERATOR_LEASE = ("elasticjob-system", "elasticjob-elasticjob-operator")
METRICS_PORT = 8080


def lease_holder(kube: Kube) -> str | None:
    """The operator pod that holds the leader Lease (identities are `<pod>_<suffix>`), or None."""
    lease = kube.get("lease", OPERATOR_LEASE[1], OPERATOR_LEASE[0])
    identity = ((lease or {}).get("spec") or {}).get("holderIdentity") or ""
    return identity.rpartition("_")[0] or None


def operator_metrics(kube: Kube) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The leader's /metrics, through the apiserver's pod proxy (the same on every cluster), parsed
    with prometheus-client's parser: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    leader = wait_for(lambda: lease_holder(kube), 60, "an operator leader", lambda: kube.story(OPERATOR_LEASE[0]))
    path = f"/api/v1/namespaces/{OPERATOR_LEASE[0]}/pods/{leader}:{METRICS_PORT}/proxy/metrics"
    text = kube.run("get", "--raw", path).stdout
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def moved(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
    """How much one series moved between two scrapes (absent counts as 0)."""
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def wait_for(predicate: Callable[[], T | None], timeout: float, describe: str, story: Callable[[], str]) -> T:
    """Poll `predicate` until it returns something truthy; on timeout fail with the story."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {describe}\n{story()}")


def example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((REPO / "manifests" / "examples" / name).read_text()) if d]


def job_manifests(
    name: str,
    *,
    replicas: int = 2,
    min_replicas: int = 1,
    max_replicas: int | None = None,
    steps: int = 300,
    step_sleep: float = 0.02,
    command: list[str] | None = None,
    spec: dict[str, Any] | None = None,
    gpus: int = 0,
    spread: bool = False,
    shared_checkpoints: Path | None = None,
) -> list[dict[str, Any]]:
    """A ConfigMap with the example training script and an ElasticJob running it.

    `gpus`: nvidia.com/gpu per worker. `spread`: at most one worker per node. `shared_checkpoints`:
    a hostPath directory (storage that outlives nodes) holding one checkpoint folder per pod
    name, which a replacement pod of the same name picks up.
    """
    cm, job = example("synthetic-cpu.yaml")
    cm["metadata"]["name"] = f"{name}-script"
    job["metadata"]["name"] = name
    job["spec"].update(
        minReplicas=min_replicas, maxReplicas=max_replicas or replicas, replicas=replicas, **(spec or {})
    )
    pod = job["spec"]["template"]["spec"]
    pod["volumes"][0]["configMap"]["name"] = f"{name}-script"
    trainer = pod["containers"][0]
    trainer["command"] = command or ["python", "/opt/train/train.py", "--steps", str(steps)]
    trainer["env"].append({"name": "STEP_SLEEP", "value": str(step_sleep)})
    if gpus:
        trainer["resources"].setdefault("limits", {})["nvidia.com/gpu"] = str(gpus)
    if spread:
        term = {
            "labelSelector": {"matchLabels": {"elasticjob.io/job-name": name, "elasticjob.io/role": "worker"}},
            "topologyKey": "kubernetes.io/hostname",
        }
        pod["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    if shared_checkpoints is not None:
        shared_checkpoints.mkdir(parents=True, exist_ok=True)
        volume = next(v for v in pod["volumes"] if v["name"] == "checkpoints")
        volume.clear()
        volume.update(name="checkpoints", hostPath={"path": str(shared_checkpoints), "type": "Directory"})
        for env in trainer["env"]:
            if env["name"] == "CHECKPOINT_DIR":
                env["value"] = "/checkpoints/$(ELASTICJOB_POD_NAME)"
    return [cm, job]


def phase(kube: Kube, name: str, namespace: str) -> str | None:
    phase: str | None = ((kube.get("ej", name, namespace) or {}).get("status") or {}).get("phase")
    return phase

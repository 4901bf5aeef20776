"""B1's parts: the local control plane with the operator, the 4 x 2 job, and the time to step 1.

B1 measures from `kubectl apply` of a 4-node x 2-process CPU job to every rank finishing step 1,
on the local control plane with the operator installed from its chart, against the baseline of
the same script under plain `torchrun`: 4 agents as local processes sharing a local c10d store,
started together. Both write one timestamp file per rank (`step_script.py`). The jobs are the
rounds of `recovery`, which go on to B2's faults.

Limits: the local cluster's pods are host processes, so image pulls and container start-up of a
real node are not in the figure; the cluster's own start is not either (it runs before timing).
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from elasticjob_bench.machine import REPO

if TYPE_CHECKING:
    from elasticjob_localcluster.cluster import Cluster

NODES, NPROC = 4, 2
SCRIPT = Path(__file__).with_name("step_script.py")
NAMESPACE = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def step_times(marks: Path) -> dict[str, list[tuple[int, float]]]:
    """Per rank file, the (step, time) lines written so far."""
    out = {}
    for f in marks.glob("rank-*"):
        complete = f.read_text().split("\n")[:-1]  # a line still being written has no newline yet
        fields = [line.split() for line in complete]
        out[f.name] = [(int(p[0]), float(p[1])) for p in fields if len(p) == 2]
    return out


def wait_first_step(marks: Path, t0: float, timeout: float) -> float:
    """Seconds from t0 until every rank has finished step 1."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = step_times(marks)
        if len(times) == NODES * NPROC and all(times.values()):
            return max(t[0][1] for t in times.values()) - t0
        time.sleep(0.05)
    raise RuntimeError(f"only {len(step_times(marks))} of {NODES * NPROC} ranks finished step 1")


def install_chart(cluster: Cluster) -> None:
    """helm-install the operator's chart into `elasticjob-system` of a started local cluster."""
    if cluster.bin is None:
        raise RuntimeError("the cluster is not started")
    subprocess.run(
        [str(cluster.bin / "helm"), f"--kubeconfig={cluster.kubeconfig}", "upgrade", "--install", "elasticjob",
         str(REPO / "charts" / "elasticjob-operator"), "-n", "elasticjob-system", "--wait", "--timeout", "180s"],
        check=True, capture_output=True,
    )  # fmt: skip


class Operator:
    """The local control plane with the chart installed, for the operator side of B1."""

    def __init__(self) -> None:
        from elasticjob_localcluster.cluster import Cluster

        self.cluster = Cluster(REPO / ".cluster-bench")

    def __enter__(self) -> Operator:
        self.cluster.start()
        self.kubectl("create", "namespace", "elasticjob-system")
        self.kubectl("create", "namespace", NAMESPACE)
        install_chart(self.cluster)
        return self

    @property
    def _bin(self) -> Path:
        if self.cluster.bin is None:
            raise RuntimeError("the cluster is not started")
        return self.cluster.bin

    def __exit__(self, *exc: object) -> None:
        self.cluster.stop()

    def kubectl(self, *args: str) -> str:
        return self.cluster.kubectl(*args).stdout

    def apply(self, docs: list[dict[str, Any]]) -> None:
        subprocess.run(
            [str(self._bin / "kubectl"), f"--kubeconfig={self.cluster.kubeconfig}", "apply", "-n", NAMESPACE,
             "-f", "-"],
            input=yaml.safe_dump_all(docs), text=True, check=True, capture_output=True,
        )  # fmt: skip

    def job(self, name: str, marks: Path, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """A ConfigMap with the step script and a 4 x 2 ElasticJob running it."""
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
              "data": {"step.py": SCRIPT.read_text()}}  # fmt: skip
        variables = {"MARK_DIR": "/marks", "OMP_NUM_THREADS": "1", **(env or {})}
        job = {
            "apiVersion": "elasticjob.io/v1alpha1", "kind": "ElasticJob", "metadata": {"name": name},
            "spec": {
                "minReplicas": NODES, "maxReplicas": NODES, "replicas": NODES, "nprocPerNode": NPROC,
                "template": {"spec": {
                    "containers": [{
                        "name": "trainer", "image": "elasticjob-training:dev",
                        "command": ["python", "/opt/bench/step.py"],
                        "env": [{"name": k, "value": v} for k, v in variables.items()],
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                        "volumeMounts": [{"name": "script", "mountPath": "/opt/bench"},
                                         {"name": "marks", "mountPath": "/marks"}],
                    }],
                    "volumes": [{"name": "script", "configMap": {"name": name}},
                                {"name": "marks", "hostPath": {"path": str(marks), "type": "Directory"}}],
                }},
            },
        }  # fmt: skip
        return [cm, job]

    def delete(self, name: str) -> None:
        self.cluster.kubectl("delete", "ej", name, "-n", NAMESPACE, "--wait=true", "--timeout=120s", check=False)

    def status(self, name: str) -> dict[str, Any]:
        out = self.cluster.kubectl("get", "ej", name, "-n", NAMESPACE, "-o", "json", check=False)
        return dict(json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def summarize(baseline: list[float], ours: list[float]) -> dict[str, Any]:
    """B1 from the rounds' times to step 1: medians, the overhead in seconds, the ratio."""
    b, o = statistics.median(baseline), statistics.median(ours)
    result = {
        "torchrun_s": round(b, 3),
        "elasticjob_s": round(o, 3),
        "overhead_s": round(o - b, 3),
        "ratio": round(o / b, 3),
        "runs": {"torchrun": [round(x, 3) for x in baseline], "elasticjob": [round(x, 3) for x in ours]},
        "shape": f"{NODES} nodes x {NPROC} processes",
    }
    print(f"B1 torchrun {b:.2f} s, ElasticJob {o:.2f} s, overhead {o - b:.2f} s", flush=True)
    return result

"""B6: operator failover. Leader loss → the first reconcile by the new leader, in seconds.

Two operator replicas with leader election (the chart's `replicaCount=2`, its default lease of
15 s, renew deadline 10 s, retry 2 s) on the local control plane, and one ElasticJob whose pods
run on a simulate-mode node (they report Running without running anything, so only the operator
works). One measurement: change the job's spec (`replicas` toggled between 1 and 2, so its
generation moves), then time until the job's `status.observedGeneration` reaches the new
generation: the reconcile that answered the change. Scenarios, `runs` of each, interleaved:

- `baseline`: a healthy leader; the same change with nothing lost (the reconcile latency);
- `deleted`: the leader pod is deleted right before the change (a graceful stop: it releases the
  Lease, so the standby can take it at its next retry);
- `hung`: the leader's processes are stopped with SIGSTOP right before the change (a hung leader:
  the standby must wait until the Lease expires). After the measurement they are continued; the
  old leader finds it lost the Lease and exits, and comes back as a standby.

Each fault run also checks that the reconcile came from the other replica (the Lease holder
changed). The figure is the median per scenario, and its ratio against the baseline of the same
run. Limits: the control plane, the node agent, both replicas and this benchmark share the
machine's cores; the operator's watch of the change is part of every figure, the baseline's too.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import yaml

from elasticjob_bench.launch import NAMESPACE, Operator
from elasticjob_bench.machine import REPO

CHART = REPO / "charts" / "elasticjob-operator"
JOB = "failover"
OPERATOR_NS = "elasticjob-system"
LEASE = "elasticjob-elasticjob-operator"
GOAL_S = 20.0
SCENARIOS = ("baseline", "deleted", "hung")
TOLERATION = {"key": "elasticjob.io/simulated", "operator": "Exists", "effect": "NoSchedule"}


def job_manifest() -> dict[str, Any]:
    container = {"name": "trainer", "image": "elasticjob-training:dev", "command": ["python", "train.py"],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}  # fmt: skip
    return {
        "apiVersion": "elasticjob.io/v1alpha1", "kind": "ElasticJob", "metadata": {"name": JOB},
        "spec": {"minReplicas": 1, "maxReplicas": 2, "replicas": 1, "template": {"spec": {
            "containers": [container], "tolerations": [TOLERATION],
            "nodeSelector": {"kubernetes.io/hostname": "sim-1"}}}},
    }  # fmt: skip


def _wait(what: str, check: Callable[[], Any], timeout: float, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise RuntimeError(f"B6: {what} not within {timeout} s")


class Failover:
    def __init__(self, op: Operator) -> None:
        self.op = op

    def json(self, *args: str) -> Any:
        return json.loads(self.op.kubectl(*args, "-o", "json"))

    def holder(self) -> str | None:
        """The pod holding the Lease (identities are `<pod>_<suffix>`)."""
        out = self.op.cluster.kubectl("get", "lease", LEASE, "-n", OPERATOR_NS, "-o", "json", check=False)
        if out.returncode != 0:
            return None
        identity = (json.loads(out.stdout).get("spec") or {}).get("holderIdentity") or ""
        return identity.rpartition("_")[0] or None

    def replicas(self) -> list[str]:
        """The operator pods that are Ready and not being deleted."""
        pods = self.json("get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=elasticjob-operator")
        return [
            p["metadata"]["name"]
            for p in pods["items"]
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
        ]

    def settled(self) -> str:
        """Wait for two Ready replicas, one of them holding the Lease; returns the leader."""

        def two() -> str | None:
            ready, lead = self.replicas(), self.holder()
            return lead if len(ready) == 2 and lead in ready else None

        leader: str = _wait("two ready replicas and a leader", two, 240, poll=0.5)
        return leader

    def generations(self) -> tuple[int, int]:
        job = self.json("get", "ej", JOB, "-n", NAMESPACE)
        return int(job["metadata"]["generation"]), int((job.get("status") or {}).get("observedGeneration") or 0)

    def change_and_time(self) -> float:
        """Toggle `replicas`; seconds until the status says a reconcile saw the new generation."""
        job = self.json("get", "ej", JOB, "-n", NAMESPACE)
        replicas = 2 if job["spec"]["replicas"] == 1 else 1
        t0 = time.monotonic()
        self.op.kubectl(
            "patch", "ej", JOB, "-n", NAMESPACE, "--type=merge", "-p", json.dumps({"spec": {"replicas": replicas}})
        )
        generation = self.generations()[0]
        _wait("the new generation observed", lambda: self.generations()[1] >= generation, 120)
        return time.monotonic() - t0

    def fault(self, scenario: str, leader: str) -> Callable[[], None]:
        """Make the scenario's fault on `leader`; returns what undoes it."""
        if scenario == "deleted":
            self.op.kubectl("delete", "pod", leader, "-n", OPERATOR_NS, "--wait=false")
            return lambda: None
        if scenario == "hung":
            from elasticjob_localcluster.mountns import pod_pids

            pids = pod_pids(self.op.cluster.state, OPERATOR_NS, leader)
            if not pids:
                raise RuntimeError(f"B6: no processes found for the leader pod {leader}")
            signal_all(pids, signal.SIGSTOP)
            return lambda: signal_all(pids, signal.SIGCONT)
        return lambda: None

    def measure(self, scenario: str) -> float:
        leader = self.settled()
        undo = self.fault(scenario, leader)
        try:
            took = self.change_and_time()
            if scenario != "baseline" and self.holder() == leader:
                raise RuntimeError(f"B6 {scenario}: the old leader {leader} still holds the Lease")
        finally:
            undo()
        return took


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue


def run(runs: int, op: Operator | None = None) -> dict[str, Any]:
    """B6 on a fresh local cluster (or `op`'s), `runs` of each scenario, interleaved."""
    if op is None:
        with Operator() as fresh:
            return run(runs, fresh)
    if op.cluster.bin is None:
        raise RuntimeError("B6: the cluster is not started")
    helm = [str(op.cluster.bin / "helm"), f"--kubeconfig={op.cluster.kubeconfig}"]
    subprocess.run(
        [*helm, "upgrade", "elasticjob", str(CHART), "-n", OPERATOR_NS,
         "--reuse-values", "--set", "replicaCount=2", "--wait", "--timeout", "180s"],
        check=True, capture_output=True,
    )  # fmt: skip
    bench = Failover(op)
    op.apply([job_manifest()])
    _wait("the job's first reconcile", lambda: bench.generations()[1] >= 1, 120, poll=0.5)
    seconds: dict[str, list[float]] = {s: [] for s in SCENARIOS}
    for _ in range(runs):
        for scenario in SCENARIOS:
            seconds[scenario].append(round(bench.measure(scenario), 2))
    op.delete(JOB)
    base = statistics.median(seconds["baseline"])
    rows = []
    for scenario in SCENARIOS:
        median = statistics.median(seconds[scenario])
        rows.append({
            "scenario": scenario, "median_s": round(median, 2), "runs_s": seconds[scenario],
            "ratio_vs_baseline": round(median / base, 1) if base > 0 else None,
            "goal_met": None if scenario == "baseline" else median <= GOAL_S,
        })  # fmt: skip
    election = yaml.safe_load((CHART / "values.yaml").read_text())["leaderElection"]
    lease = {k: election[k] for k in ("leaseDuration", "renewDeadline", "retryPeriod")}
    return {"runs": runs, "goal_s": GOAL_S, "lease_s": lease, "rows": rows}

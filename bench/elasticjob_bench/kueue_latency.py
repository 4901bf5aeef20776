"""B7: a job through Kueue next to the same job without it: apply → admitted → every rank at step 1.

On the local control plane with the operator's chart and a real Kueue (built from its Go module,
installed with its webhooks: `elasticjob_localcluster.kueue`), one ResourceFlavor, a ClusterQueue
with room for the job and a LocalQueue. Each run applies B1's 4 x 2 CPU job twice, one after the
other: unqueued (the baseline) and labelled `kueue.x-k8s.io/queue-name`. For both it times `kubectl
apply` → every rank finished step 1 (the step script's marks); for the queued one also apply → the
job's `Admitted` condition True (polled every 50 ms), so admission → first step is the part after
Kueue said yes. Runs are interleaved (plain, queued, plain, ...); figures are medians and the
ratio queued / plain of the same run.

Limits: the queue is empty, so this is Kueue's cost for a job that fits at once, not a wait for
quota; the pods are host processes (no image pulls); Kueue, the control plane, the operator and
the job share the machine's cores.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from elasticjob_bench.launch import NAMESPACE, Operator, wait_first_step

KUEUE = "kueue.x-k8s.io/v1beta2"
QUEUE = "bench-queue"
STEPS = 20


def queue_objects() -> list[dict[str, Any]]:
    quota = [{"name": "cpu", "nominalQuota": "64"}, {"name": "memory", "nominalQuota": "256Gi"}]
    return [
        {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "bench"}, "spec": {}},
        {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": "bench"}, "spec": {
            "namespaceSelector": {},
            "resourceGroups": [{"coveredResources": ["cpu", "memory"],
                                "flavors": [{"name": "bench", "resources": quota}]}]}},
        {"apiVersion": KUEUE, "kind": "LocalQueue", "metadata": {"name": QUEUE, "namespace": NAMESPACE},
         "spec": {"clusterQueue": "bench"}},
    ]  # fmt: skip


def _admitted(op: Operator, name: str) -> bool:
    conds = op.status(name).get("conditions") or []
    return any(c.get("type") == "Admitted" and c.get("status") == "True" for c in conds)


def one(op: Operator, work: Path, queued: bool) -> dict[str, float]:
    name = f"b7-{'q' if queued else 'p'}-{uuid.uuid4().hex[:5]}"
    marks = work / name
    marks.mkdir()
    docs = op.job(name, marks, {"STEPS": str(STEPS), "STEP_SLEEP": "0.01"})
    if queued:
        docs[1]["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": QUEUE}
    t0 = time.time()
    op.apply(docs)
    out: dict[str, float] = {}
    try:
        if queued:
            deadline = time.monotonic() + 120
            while not _admitted(op, name):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"B7: {name} not admitted within 120 s")
                time.sleep(0.05)
            out["admitted_s"] = time.time() - t0
        out["first_step_s"] = wait_first_step(marks, t0, 240)
    finally:
        op.delete(name)
    return out


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def run(runs: int) -> dict[str, Any]:
    from elasticjob_localcluster import kueue

    work = Path(tempfile.mkdtemp(prefix="ej-b7-"))
    try:
        with Operator() as op:
            kubectl = op.cluster.bin / "kubectl" if op.cluster.bin else None
            kueue.install(op.cluster.kubeconfig, kueue.ensure(), kubectl=kubectl)
            op.apply(queue_objects())
            one(op, work, queued=True)  # warm-up: the first Workload, the flavor in the operator's cache
            plain, queued = [], []
            for _ in range(runs):
                plain.append(one(op, work, queued=False))
                queued.append(one(op, work, queued=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p = [r["first_step_s"] for r in plain]
    q = [r["first_step_s"] for r in queued]
    admitted = [r["admitted_s"] for r in queued]
    after = [r["first_step_s"] - r["admitted_s"] for r in queued]
    result = {
        "runs": runs,
        "shape": "4 nodes x 2 processes",
        "plain_first_step_s": _median(p),
        "queued_first_step_s": _median(q),
        "queued_admitted_s": _median(admitted),
        "queued_admission_to_first_step_s": _median(after),
        "overhead_s": round(_median(q) - _median(p), 3),
        "ratio": round(_median(q) / _median(p), 3),
        "runs_s": {"plain": [round(x, 3) for x in p], "queued": [round(x, 3) for x in q],
                   "admitted": [round(x, 3) for x in admitted]},
    }  # fmt: skip
    print(f"B7 plain {result['plain_first_step_s']} s, through Kueue {result['queued_first_step_s']} s "
          f"(admitted at {result['queued_admitted_s']} s), ratio {result['ratio']}", flush=True)  # fmt: skip
    return result

"""Preemption without Kueue (marked `faults`): Kubernetes' own priority preemption takes a worker,
and the job shrinks to what is left instead of failing or counting it as a failure.

The real kube-scheduler chooses the victim: a high-priority pod is pinned to the node of one
worker and asks for exactly that node's free CPU plus the worker's request, so evicting that one
low-priority worker is the smallest preemption that makes it fit (the operator's pod, at
priority 0, is above the job's negative priority and is reprieved first). The scheduler marks
the victim `DisruptionTarget` (PreemptionByScheduler) before it deletes it.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from .helpers import Kube, wait_for
from .test_faults import LAST_CALL, finish, live_pods, start, status

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
STEPS = 400  # at world size 3 with one process per pod a step takes about 0.1 s


def millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def free_cpu(kube: Kube, node: str) -> int:
    allocatable = millicores(kube.json("get", "node", node)["status"]["allocatable"]["cpu"])
    pods = kube.json("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}")["items"]
    requested = sum(
        millicores(c.get("resources", {}).get("requests", {}).get("cpu", "0"))
        for p in pods
        if p["status"].get("phase") not in ("Succeeded", "Failed")
        for c in p["spec"]["containers"]
    )
    return allocatable - requested


def priority_class(name: str, value: int) -> dict[str, Any]:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value}


def test_priority_preemption_shrinks_the_job_and_capacity_brings_it_back(operator: Kube, namespace: str) -> None:
    low, high = f"ej-low-{uuid.uuid4().hex[:6]}", f"ej-high-{uuid.uuid4().hex[:6]}"
    operator.apply([priority_class(low, -10), priority_class(high, 1000)], namespace)
    try:
        spec = {**LAST_CALL, "nprocPerNode": 1, "scheduling": {"priorityClassName": low}}
        start(operator, namespace, "pre", STEPS, replicas=3, max_replicas=3, spread=True, spec=spec)
        wait_for(lambda: status(operator, "pre", namespace)["rendezvous"].get("worldSize") == 3, 120,
                 "world size 3", lambda: operator.story(namespace))  # fmt: skip
        pods = live_pods(operator, namespace, "pre")
        store_node = next(
            p["spec"]["nodeName"] for p in pods if p["metadata"]["labels"]["elasticjob.io/role"] == "store"
        )
        victim = next(p for p in sorted(pods, key=lambda p: p["metadata"]["name"], reverse=True)
                      if p["metadata"]["labels"]["elasticjob.io/role"] == "worker"
                      and p["spec"]["nodeName"] != store_node)  # fmt: skip
        node, name = victim["spec"]["nodeName"], victim["metadata"]["name"]
        request = free_cpu(operator, node) + millicores(victim["spec"]["containers"][0]["resources"]["requests"]["cpu"])
        blocker = {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "blocker"},
            "spec": {"priorityClassName": high, "nodeSelector": {"kubernetes.io/hostname": node},
                     "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
                         "name": "main", "image": "elasticjob-training:dev", "command": ["sleep", "600"],
                         "resources": {"requests": {"cpu": f"{request}m"}}}]},
        }  # fmt: skip
        operator.apply([blocker], namespace)

        def shrunk() -> dict[str, Any] | None:
            st = status(operator, "pre", namespace)
            return st if st["rendezvous"].get("worldSize") == 2 else None

        st = wait_for(shrunk, 120, "the job to go on at world size 2", lambda: operator.story(namespace))
        assert st["phase"] != "Failed" and st["replacements"] == 0, st
        events = operator.json("get", "events", "-n", namespace)["items"]
        disrupted = [e["message"] for e in events if e["reason"] == "WorkerDisrupted"]
        assert disrupted and name in disrupted[0] and "PreemptionByScheduler" in disrupted[0], disrupted
        # the victim's index is created again and waits for capacity
        wait_for(lambda: (operator.get("pod", name, namespace) or {}).get("status", {}).get("phase") == "Pending",
                 60, f"{name} to be created again and wait", lambda: operator.story(namespace))  # fmt: skip
        operator.run("delete", "pod", "blocker", "-n", namespace, "--wait=false")
        wait_for(lambda: status(operator, "pre", namespace)["rendezvous"].get("worldSize") == 3, 120,
                 "world size 3 again", lambda: operator.story(namespace))  # fmt: skip
        st = finish(operator, namespace, "pre", 3, STEPS)
        assert st["replacements"] == 0 and st["restarts"]["total"] == 0, st
    finally:
        operator.run("delete", "priorityclass", low, high, "--wait=false", check=False)

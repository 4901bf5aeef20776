"""Gang scheduling on a real gang scheduler (marked `faults`): kube-scheduler's own, the Workload
API of Kubernetes 1.35 (feature gates GenericWorkload and GangScheduling, which the local control
plane and the kind cluster turn on). With room for one of two workers, neither binds; the gang's
minimum follows `minReplicas`; once both fit, both bind.
"""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import Kube, job_manifests, wait_for
from .test_faults import LAST_CALL, condition, finish, hold_one_gpu, status

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
STEPS = 100


def workers(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    selector = "elasticjob.io/job-name=gang,elasticjob.io/role=worker"
    items: list[dict[str, Any]] = kube.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return items


def unschedulable(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "PodScheduled" and c["status"] == "False" for c in conds)


@pytest.mark.kind("a real scheduler and kubelet: binding is the scheduler's, the GPU capacity a node's")
def test_a_gang_that_does_not_fit_binds_nothing_until_it_does(operator: Kube, namespace: str) -> None:
    hold_one_gpu(operator, namespace)
    spec = {**LAST_CALL, "scheduling": {"gang": True}}
    operator.apply(job_manifests("gang", replicas=2, min_replicas=2, steps=STEPS, step_sleep=0.05, gpus=1, spec=spec),
                   namespace)  # fmt: skip
    gang = wait_for(lambda: condition(operator, "gang", namespace, "GangScheduling"), 60, "the gang's Workload",
                    lambda: operator.story(namespace))  # fmt: skip
    assert gang["reason"] == "PodGroupCreated" and "Workload gang-workers" in gang["message"], gang

    # one GPU is free, so without the gang one worker would bind. The scheduler tried the group
    # and turned it down (a FailedScheduling pod), and bound neither pod
    def tried() -> list[dict[str, Any]] | None:
        pods = workers(operator, namespace)
        return pods if len(pods) == 2 and any(map(unschedulable, pods)) else None

    pods = wait_for(tried, 90, "the scheduler to try the gang", lambda: operator.story(namespace))
    assert [p["spec"].get("nodeName") for p in pods] == [None, None], operator.story(namespace)

    # minCount follows minReplicas: the Workload's pod groups are immutable, so it is made again
    # under its name, which the pods name (a pod already waiting at kube-scheduler's Permit sees the
    # new minimum when that wait times out, 5 minutes in 1.35: docs/decisions.md)
    def group() -> dict[str, Any]:
        return operator.get("workloads.v1alpha1.scheduling.k8s.io", "gang-workers", namespace) or {}

    def min_count(workload: dict[str, Any]) -> int | None:
        return next((g["policy"]["gang"]["minCount"] for g in workload.get("spec", {}).get("podGroups", [])), None)

    before = group()
    assert min_count(before) == 2, before
    operator.run("patch", "elasticjob", "gang", "-n", namespace, "--type=merge", "-p", '{"spec":{"minReplicas":1}}')

    def replaced() -> dict[str, Any] | None:
        workload = group()
        return workload if min_count(workload) == 1 else None

    after = wait_for(replaced, 60, "the Workload's minCount 1", lambda: operator.story(namespace))
    assert after["metadata"]["uid"] != before["metadata"]["uid"], (before, after)
    wait_for(lambda: status(operator, "gang", namespace).get("observedGeneration") == 2, 30, "the reconcile's status",
             lambda: operator.story(namespace))  # fmt: skip
    followed = condition(operator, "gang", namespace, "GangScheduling")
    assert followed is not None and followed["status"] == "True" and "gang of 1" in followed["message"], followed
    operator.run("delete", "pod", "blocker", "-n", namespace, "--wait=false")
    st = finish(operator, namespace, "gang", 4, STEPS)  # 2 pods x nprocPerNode 2
    assert st["replacements"] == 0
    assert {p["spec"]["nodeName"] for p in workers(operator, namespace)} == {"node-3"}

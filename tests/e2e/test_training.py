"""Training end to end: the CPU example, and elasticity while it trains."""

from __future__ import annotations

import json

import pytest

from .helpers import Kube, example, job_manifests, phase, wait_for

pytestmark = pytest.mark.e2e


def final_result(kube: Kube, namespace: str, job: str) -> dict[str, object]:
    """Rank 0's result: the termination message of the worker pod that ran it."""
    for pod in kube.json(
        "get", "pods", "-n", namespace, "-l", f"elasticjob.io/job-name={job},elasticjob.io/role=worker"
    )["items"]:
        for cs in pod.get("status", {}).get("containerStatuses", []):
            message = cs.get("state", {}).get("terminated", {}).get("message")
            if message:
                return dict(json.loads(message))
    raise AssertionError(f"no worker reported a result\n{kube.story(namespace)}")


@pytest.mark.kind("image contents: the training image from the Dockerfile runs the CPU example in containerd")
def test_cpu_example_succeeds(operator: Kube, namespace: str) -> None:
    operator.apply(example("synthetic-cpu.yaml"), namespace)
    wait_for(lambda: phase(operator, "synthetic", namespace) in ("Succeeded", "Failed"), 300, "the example to finish",
             lambda: operator.story(namespace))  # fmt: skip
    job = operator.get("ej", "synthetic", namespace)
    assert job is not None
    assert job["status"]["phase"] == "Succeeded", operator.story(namespace)
    assert job["status"]["rendezvous"]["worldSize"] == 4
    workers = job["status"]["restarts"]["workers"]
    assert sorted(workers) == ["synthetic-worker-0", "synthetic-worker-1"]
    assert {w["worldSize"] for w in workers.values()} == {4}
    result = final_result(operator, namespace, "synthetic")
    assert result["ok"] is True and result["worldSize"] == 4 and result["steps"] == 300
    events = operator.json("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=synthetic")[
        "items"
    ]
    assert "Succeeded" in [e["reason"] for e in events]
    # `kubectl describe` names the operator as the events' source, not its framework
    assert {(e["source"]["component"], e["reportingComponent"]) for e in events} == {("elasticjob-operator",) * 2}


@pytest.mark.kind("the exit code and termination message are the kubelet's, from a real container")
def test_user_error_fails_the_job_with_its_class(operator: Kube, namespace: str) -> None:
    operator.apply(job_manifests("broken", replicas=1, command=["python", "-c", "raise SystemExit('boom')"],
                                 spec={"maxRestarts": 1, "cleanPodPolicy": "None"}), namespace)  # fmt: skip
    wait_for(
        lambda: phase(operator, "broken", namespace) == "Failed",
        180,
        "broken to fail",
        lambda: operator.story(namespace),
    )
    job = operator.get("ej", "broken", namespace)
    assert job is not None
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "UserError" and "exit code 3" in failed["message"]
    report = job["status"]["restarts"]["workers"]["broken-worker-0"]
    assert report["lastFailure"]["exitCode"] == 1 and "boom" in report["lastFailure"]["message"]
    # cleanPodPolicy None: the failed job keeps its pods (the store still running) for inspection;
    # the policy acts in the same reconcile that sets Failed, so a deletion would already show
    for pod in ("broken-worker-0", "broken-rdzv-g1"):
        obj = operator.get("pod", pod, namespace)
        assert obj is not None and not obj["metadata"].get("deletionTimestamp"), pod

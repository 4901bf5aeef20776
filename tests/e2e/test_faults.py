"""Fault tolerance end to end (marked `faults`): elastic scaling, a killed worker process, a lost
worker pod, a lost store, a lost node, an operator restart, too little capacity, and jobs that
must fail (backoffLimit, cleanPodPolicy).

Each test trains the example script (checkpointing every 20 steps) and checks the script's own
final result; after a fault the ranks must resume from a checkpoint (a start step above 0 in the
logs), so nothing is lost beyond the last checkpoint.

How long each one trains is what these tests cost (at world size 4 on 2 cores a step takes about
0.16 s, at 6 about 0.24 s). STEPS is enough where the fault lands before step 50 or stops the
training until it is repaired. RUNWAY_STEPS is for the tests whose change (a pod joining) must
land while training still runs: a join was seen 4 to 7 s after the change, and 300 steps give
at least 3 times that even at world size 2 (0.07 s a step). Those jobs start below maxReplicas, so
their first round would wait out the default 15 s last call for agents that never come; they set
it to 3 s (LAST_CALL), which changes no assertion.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import OPERATOR_NS
from .helpers import Kube, job_manifests, moved, operator_metrics, phase, wait_for
from .test_training import final_result

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
STEPS = 200
RUNWAY_STEPS = 300
LAST_CALL = {"rendezvous": {"lastCallTimeoutSeconds": 3}}


def status(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = (kube.get("ej", name, namespace) or {}).get("status", {})
    return found


def start(kube: Kube, namespace: str, name: str, steps: int = STEPS, **kw: Any) -> None:
    kube.apply(job_manifests(name, steps=steps, step_sleep=0.05, **kw), namespace)
    wait_for(lambda: status(kube, name, namespace).get("rendezvous", {}).get("worldSize"), 180,
             f"{name} to train", lambda: kube.story(namespace))  # fmt: skip


def condition(kube: Kube, name: str, namespace: str, ctype: str) -> dict[str, Any] | None:
    conds = status(kube, name, namespace).get("conditions") or []
    return next((c for c in conds if c["type"] == ctype and c["status"] == "True"), None)


def start_steps(kube: Kube, namespace: str, name: str) -> list[int]:
    """The steps rank 0 (re)started at, from the worker logs ("rank 0/N starts at step S")."""
    steps = []
    for pod in kube.json("get", "pods", "-n", namespace, "-l", f"elasticjob.io/job-name={name}")["items"]:
        log = kube.pod_log(namespace, pod["metadata"]["name"])
        steps += [int(m) for m in re.findall(r"rank 0/\d+ starts at step (\d+)", log)]
    return steps


def trained_some_steps(kube: Kube, namespace: str, name: str) -> None:
    """Wait until rank 0 logged step 50, so checkpoints exist before the fault."""

    def logged() -> bool:
        pods = kube.json("get", "pods", "-n", namespace, "-l", f"elasticjob.io/job-name={name}")["items"]
        return any("step 50 loss" in kube.pod_log(namespace, p["metadata"]["name"]) for p in pods)

    wait_for(logged, 120, f"{name} to reach step 50", lambda: kube.story(namespace))


def live_pods(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    pods = kube.json("get", "pods", "-n", namespace, "-l", f"elasticjob.io/job-name={name}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def finish(kube: Kube, namespace: str, name: str, world: int, steps: int = STEPS) -> dict[str, Any]:
    wait_for(lambda: phase(kube, name, namespace) in ("Succeeded", "Failed"), 400, f"{name} to finish",
             lambda: kube.story(namespace))  # fmt: skip
    st = status(kube, name, namespace)
    assert st["phase"] == "Succeeded", kube.story(namespace)
    result = final_result(kube, namespace, name)
    assert result["ok"] is True and result["steps"] == steps and result["worldSize"] == world
    return st


def test_scale_up_mid_training(operator: Kube, namespace: str) -> None:
    start(operator, namespace, "up", RUNWAY_STEPS, replicas=2, max_replicas=3, spec=LAST_CALL)
    operator.run("scale", "ej", "up", "-n", namespace, "--replicas=3")
    wait_for(lambda: status(operator, "up", namespace).get("rendezvous", {}).get("worldSize") == 6, 180,
             "world size 6", lambda: operator.story(namespace))  # fmt: skip
    st = finish(operator, namespace, "up", 6, RUNWAY_STEPS)
    assert st["restarts"]["total"] == 0  # a membership change is not a restart


def test_scale_down_drains_and_training_goes_on(operator: Kube, namespace: str) -> None:
    start(operator, namespace, "down", replicas=3, max_replicas=3)
    wait_for(lambda: status(operator, "down", namespace).get("rendezvous", {}).get("worldSize") == 6, 180,
             "world size 6", lambda: operator.story(namespace))  # fmt: skip
    operator.run("scale", "ej", "down", "-n", namespace, "--replicas=2")
    st = finish(operator, namespace, "down", 4)
    assert st["restarts"]["total"] == 0 and st["replacements"] == 0
    reasons = {e["reason"] for e in operator.json("get", "events", "-n", namespace)["items"]}
    assert "ScalingDown" in reasons


@pytest.mark.kind("pod termination: SIGTERM, the grace period and the final status come from a real kubelet")
def test_deleted_worker_pod_is_replaced(operator: Kube, namespace: str) -> None:
    before = operator_metrics(operator)
    start(operator, namespace, "lost", replicas=2)
    world = operator_metrics(operator)
    assert world[("elasticjob_job_world_size", (("job", "lost"), ("namespace", namespace)))] == 4
    operator.run("delete", "pod", "lost-worker-1", "-n", namespace, "--wait=false")
    wait_for(lambda: status(operator, "lost", namespace).get("replacements") == 1, 120, "a replacement",
             lambda: operator.story(namespace))  # fmt: skip
    st = finish(operator, namespace, "lost", 4)
    assert st["replacements"] == 1
    after = operator_metrics(operator)
    assert moved(before, after, "elasticjob_worker_replacements_total", failure_class="Deleted") == 1
    assert moved(before, after, "elasticjob_jobs_created_total") == 1
    assert moved(before, after, "elasticjob_jobs_finished_total", result="Succeeded", reason="AllWorkersSucceeded") == 1
    # store, 2 workers and the replacement, besides the store Service, ServiceAccount, Role and RoleBinding
    assert moved(before, after, "elasticjob_apiserver_requests_total", verb="create", code="201") >= 8
    assert after[("elasticjob_leader", ())] == 1


@pytest.mark.kind("the store's startup and readiness probes are run by a real kubelet")
def test_lost_store_is_recreated_and_agents_rejoin(operator: Kube, namespace: str) -> None:
    before = operator_metrics(operator)
    start(operator, namespace, "store", replicas=2)
    operator.run("delete", "pod", "store-rdzv-g1", "-n", namespace, "--grace-period=0", "--force", "--wait=false")
    wait_for(lambda: status(operator, "store", namespace).get("rendezvous", {}).get("storeGeneration") == 2, 120,
             "store generation 2", lambda: operator.story(namespace))  # fmt: skip
    finish(operator, namespace, "store", 4)
    reasons = {e["reason"] for e in operator.json("get", "events", "-n", namespace)["items"]}
    assert "StoreRecreated" in reasons
    after = operator_metrics(operator)
    assert moved(before, after, "elasticjob_store_recreations_total") == 1
    assert moved(before, after, "elasticjob_jobs_finished_total", result="Succeeded", reason="AllWorkersSucceeded") == 1


def test_killed_worker_process_restarts_the_group(operator: Kube, namespace: str) -> None:
    start(operator, namespace, "kill", replicas=2)
    trained_some_steps(operator, namespace, "kill")
    assert operator.kill_worker(namespace, "kill-worker-1", local_rank=1) == 1
    wait_for(lambda: status(operator, "kill", namespace).get("restarts", {}).get("total"), 60,
             "the restart to show in status", lambda: operator.story(namespace))  # fmt: skip
    st = status(operator, "kill", namespace)
    assert st["restarts"]["workers"]["kill-worker-1"]["restarts"] >= 1
    st = finish(operator, namespace, "kill", 4)
    assert st["restarts"]["total"] == 1 and st["replacements"] == 0  # one group restart, no pod lost
    assert max(start_steps(operator, namespace, "kill")) > 0, operator.story(namespace)
    reasons = {e["reason"] for e in operator.json("get", "events", "-n", namespace)["items"]}
    assert "WorkerGroupRestarted" in reasons


@pytest.mark.kind("node loss through the container runtime: the node's container is killed")
def test_lost_node_pods_are_replaced_on_other_nodes(operator: Kube, namespace: str) -> None:
    # minReplicas 2: the survivor cannot finish alone, so the replacement must join
    start(operator, namespace, "node", replicas=2, min_replicas=2, spread=True)
    trained_some_steps(operator, namespace, "node")
    pod = operator.get("pod", "node-worker-1", namespace)
    assert pod is not None
    lost = pod["spec"]["nodeName"]
    operator.lose_node(lost)
    try:

        def replaced_elsewhere() -> bool:
            new = operator.get("pod", "node-worker-1", namespace) or {}
            return bool(new.get("metadata", {}).get("uid") != pod["metadata"]["uid"]
                        and new.get("spec", {}).get("nodeName") not in (None, lost))  # fmt: skip

        wait_for(replaced_elsewhere, 180, "node-worker-1 to be replaced on another node",
                 lambda: operator.story(namespace))  # fmt: skip
        st = finish(operator, namespace, "node", 4)
    finally:
        operator.restore_node(lost)
    assert st["replacements"] >= 1
    assert max(start_steps(operator, namespace, "node")) > 0, operator.story(namespace)
    messages = [e["message"] for e in operator.json("get", "events", "-n", namespace)["items"]
                if e["reason"] == "WorkerLost"]  # fmt: skip
    assert any("NodeLost" in m for m in messages), messages


def test_lost_gpu_node_waits_for_capacity_then_completes(operator: Kube, namespace: str, tmp_path: Path) -> None:
    # both workers need a GPU; only node-3 has GPUs, so losing it leaves nowhere to go
    start(operator, namespace, "gpu", replicas=2, gpus=1, shared_checkpoints=tmp_path / "checkpoints")
    nodes = {p["spec"]["nodeName"] for p in live_pods(operator, namespace, "gpu")
             if p["metadata"]["labels"]["elasticjob.io/role"] == "worker"}  # fmt: skip
    assert nodes == {"node-3"}
    trained_some_steps(operator, namespace, "gpu")
    operator.lose_node("node-3")
    try:

        def waiting_for_gpus() -> str | None:
            cond = condition(operator, "gpu", namespace, "WaitingForRendezvous")
            message = (cond or {}).get("message", "")
            return message if "Insufficient nvidia.com/gpu" in message else None

        message = wait_for(waiting_for_gpus, 180, "WaitingForRendezvous to name the missing GPUs",
                           lambda: operator.story(namespace))  # fmt: skip
        assert "gpu-worker-0" in message and "gpu-worker-1" in message
    finally:
        operator.restore_node("node-3")
    finish(operator, namespace, "gpu", 4)  # 2 pods x nprocPerNode 2
    assert max(start_steps(operator, namespace, "gpu")) > 0, operator.story(namespace)


def test_operator_restart_mid_scale_up_converges(operator: Kube, namespace: str) -> None:
    start(operator, namespace, "opr", RUNWAY_STEPS, replicas=1, max_replicas=3, spec=LAST_CALL)
    operator.run("scale", "ej", "opr", "-n", namespace, "--replicas=3")
    wait_for(lambda: operator.get("pod", "opr-worker-2", namespace), 60, "the scale-up to begin",
             lambda: operator.story(namespace))  # fmt: skip
    operator.run("delete", "pod", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=elasticjob-operator",
                 "--wait=false")  # fmt: skip
    wait_for(lambda: status(operator, "opr", namespace).get("rendezvous", {}).get("worldSize") == 6, 240,
             "world size 6", lambda: operator.story(namespace))  # fmt: skip
    job = operator.get("ej", "opr", namespace)
    assert job is not None
    pods = live_pods(operator, namespace, "opr")
    assert sorted(p["metadata"]["name"] for p in pods) == ["opr-rdzv-g1", "opr-worker-0", "opr-worker-1",
                                                          "opr-worker-2"]  # fmt: skip
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"] for p in pods)
    all_pods = operator.json("get", "pods", "-n", namespace)["items"]
    assert len(all_pods) == len(pods), "no orphaned or duplicate pods"
    st = finish(operator, namespace, "opr", 6, RUNWAY_STEPS)
    assert st["restarts"]["total"] == 0
    operator.run("rollout", "status", "deployment", "-n", OPERATOR_NS, "--timeout=120s")


def test_backoff_limit_fails_the_job_and_cleans_running_pods(operator: Kube, namespace: str) -> None:
    start(operator, namespace, "bo", replicas=2, spec={"failurePolicy": {"backoffLimit": 0}})
    operator.run("delete", "pod", "bo-worker-1", "-n", namespace, "--wait=false")
    wait_for(lambda: phase(operator, "bo", namespace) == "Failed", 120, "bo to fail",
             lambda: operator.story(namespace))  # fmt: skip
    failed = condition(operator, "bo", namespace, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded", failed
    # cleanPodPolicy Running (the default): the pods still running are deleted
    wait_for(lambda: not live_pods(operator, namespace, "bo"), 120, "the running pods to be deleted",
             lambda: operator.story(namespace))  # fmt: skip


def hold_one_gpu(kube: Kube, namespace: str) -> None:
    """A pod named `blocker` that holds one of node-3's two GPUs until it is deleted."""
    blocker = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "blocker"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "elasticjob-training:dev", "command": ["sleep", "600"],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        }]},
    }  # fmt: skip
    kube.apply([blocker], namespace)
    wait_for(lambda: (kube.get("pod", "blocker", namespace) or {}).get("status", {}).get("phase") == "Running",
             60, "the blocker pod to hold a GPU", lambda: kube.story(namespace))  # fmt: skip


def test_partial_capacity_starts_with_what_fits_and_grows(operator: Kube, namespace: str) -> None:
    hold_one_gpu(operator, namespace)
    start(operator, namespace, "part", RUNWAY_STEPS, replicas=2, min_replicas=1, gpus=1, spec=LAST_CALL)
    assert status(operator, "part", namespace)["rendezvous"]["worldSize"] == 2  # 1 pod x nprocPerNode 2
    running = wait_for(lambda: condition(operator, "part", namespace, "Running"), 60, "part to run",
                       lambda: operator.story(namespace))  # fmt: skip
    assert "1 of 2" in running["message"] and "Insufficient nvidia.com/gpu" in running["message"], running
    operator.run("delete", "pod", "blocker", "-n", namespace, "--wait=false")
    wait_for(lambda: status(operator, "part", namespace).get("rendezvous", {}).get("worldSize") == 4, 180,
             "world size 4", lambda: operator.story(namespace))  # fmt: skip
    finish(operator, namespace, "part", 4, RUNWAY_STEPS)

"""Fault tolerance end to end (marked `faults`): elastic scaling, a lost worker pod, a lost store.

Each test trains the example script (checkpointing every 20 steps) and checks the script's own
final result, so nothing may be lost beyond the last checkpoint.
"""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import Kube, job_manifests, phase, wait_for
from .test_training import final_result

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
STEPS = 500


def status(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    return (kube.get("ej", name, namespace) or {}).get("status", {})


def start(kube: Kube, namespace: str, name: str, **kw: Any) -> None:
    kube.apply(job_manifests(name, steps=STEPS, step_sleep=0.05, **kw), namespace)
    wait_for(lambda: status(kube, name, namespace).get("rendezvous", {}).get("worldSize"), 180,
             f"{name} to train", lambda: kube.story(namespace))  # fmt: skip


def finish(kube: Kube, namespace: str, name: str, world: int) -> dict[str, Any]:
    wait_for(lambda: phase(kube, name, namespace) in ("Succeeded", "Failed"), 400, f"{name} to finish",
             lambda: kube.story(namespace))  # fmt: skip
    st = status(kube, name, namespace)
    assert st["phase"] == "Succeeded", kube.story(namespace)
    result = final_result(kube, namespace, name)
    assert result["ok"] is True and result["steps"] == STEPS and result["worldSize"] == world
    return st


def test_scale_up_mid_training(operator: Kube, namespace: str) -> None:
    start(operator, namespace, "up", replicas=2, max_replicas=3)
    operator.run("scale", "ej", "up", "-n", namespace, "--replicas=3")
    wait_for(lambda: status(operator, "up", namespace).get("rendezvous", {}).get("worldSize") == 6, 180,
             "world size 6", lambda: operator.story(namespace))  # fmt: skip
    st = finish(operator, namespace, "up", 6)
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


def test_deleted_worker_pod_is_replaced(operator: Kube, namespace: str) -> None:
    start(operator, namespace, "lost", replicas=2)
    operator.run("delete", "pod", "lost-worker-1", "-n", namespace, "--wait=false")
    wait_for(lambda: status(operator, "lost", namespace).get("replacements") == 1, 120, "a replacement",
             lambda: operator.story(namespace))  # fmt: skip
    st = finish(operator, namespace, "lost", 4)
    assert st["replacements"] == 1


def test_lost_store_is_recreated_and_agents_rejoin(operator: Kube, namespace: str) -> None:
    start(operator, namespace, "store", replicas=2)
    operator.run("delete", "pod", "store-rdzv-g1", "-n", namespace, "--grace-period=0", "--force", "--wait=false")
    wait_for(lambda: status(operator, "store", namespace).get("rendezvous", {}).get("storeGeneration") == 2, 120,
             "store generation 2", lambda: operator.story(namespace))  # fmt: skip
    finish(operator, namespace, "store", 4)
    reasons = {e["reason"] for e in operator.json("get", "events", "-n", namespace)["items"]}
    assert "StoreRecreated" in reasons

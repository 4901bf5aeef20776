"""Two operator replicas with leader election (the chart's `replicaCount=2`): failover end to end.

The module turns the session's release to two replicas and back. The Lease names its holder as
`<pod>_<suffix>`, so the tests find the leader pod from it. A hung leader is made for real: its
process is stopped with SIGSTOP (helpers.Kube.signal_pod: a host process on the local cluster, the
container's process through containerd on kind).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import OPERATOR_NS
from .helpers import REPO, Kube, wait_for
from .helpers import lease_holder as holder
from .test_faults import LAST_CALL, RUNWAY_STEPS, finish, live_pods, start, status

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
CHART = str(REPO / "charts" / "elasticjob-operator")


def operator_pods(kube: Kube) -> list[dict[str, Any]]:
    pods = kube.json("get", "pods", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=elasticjob-operator")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def leader_and_standby(kube: Kube) -> tuple[str, str]:
    def settled() -> tuple[str, str] | None:
        pods = [p["metadata"]["name"] for p in operator_pods(kube) if ready(p)]
        lead = holder(kube)
        if lead is None or len(pods) != 2 or lead not in pods:
            return None
        return lead, next(p for p in pods if p != lead)

    return wait_for(settled, 120, "two ready operator replicas, one holding the lease",
                    lambda: kube.story(OPERATOR_NS))  # fmt: skip


@pytest.fixture(scope="module")
def two_replicas(operator: Kube) -> Iterator[Kube]:
    operator.helm("upgrade", "elasticjob", CHART, "-n", OPERATOR_NS, "--reuse-values", "--set", "replicaCount=2",
                  "--wait", "--timeout", "120s")  # fmt: skip
    leader_and_standby(operator)
    yield operator
    operator.helm("upgrade", "elasticjob", CHART, "-n", OPERATOR_NS, "--reuse-values", "--set", "replicaCount=1",
                  "--wait", "--timeout", "120s")  # fmt: skip
    wait_for(lambda: [p for p in operator_pods(operator) if ready(p)] and holder(operator) in
             [p["metadata"]["name"] for p in operator_pods(operator)], 60, "one operator replica holding the lease",
             lambda: operator.story(OPERATOR_NS))  # fmt: skip


def restarts(kube: Kube, pod: str) -> int:
    found = kube.get("pod", pod, OPERATOR_NS) or {}
    return sum(c.get("restartCount", 0) for c in found.get("status", {}).get("containerStatuses") or [])


def assert_converged(kube: Kube, namespace: str, name: str, expected: list[str]) -> None:
    job = kube.get("ej", name, namespace)
    assert job is not None
    pods = live_pods(kube, namespace, name)
    assert sorted(p["metadata"]["name"] for p in pods) == expected, kube.story(namespace)
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"] for p in pods)
    assert len(kube.json("get", "pods", "-n", namespace)["items"]) == len(pods), "no orphaned or duplicate pods"


@pytest.mark.kind("the replicas are real containers: graceful termination by a kubelet, readiness probes")
def test_deleted_leader_mid_scale_up_hands_over(two_replicas: Kube, namespace: str) -> None:
    kube = two_replicas
    leader, _ = leader_and_standby(kube)
    start(kube, namespace, "ha", RUNWAY_STEPS, replicas=1, max_replicas=3, spec=LAST_CALL)
    kube.run("scale", "ej", "ha", "-n", namespace, "--replicas=3")
    wait_for(lambda: kube.get("pod", "ha-worker-2", namespace), 60, "the scale-up to begin",
             lambda: kube.story(namespace))  # fmt: skip
    kube.run("delete", "pod", leader, "-n", OPERATOR_NS, "--wait=false")

    # a clean stop releases the lease: the standby takes it at its next retry, or the Deployment's
    # replacement for the deleted pod does, which tries as it starts and may come first (seen on
    # kind, 2026-12-03); either way another replica leads and the scale-up goes on
    def taken_over() -> str | None:
        now = holder(kube)
        return now if now not in (None, leader) else None

    wait_for(taken_over, 30, "another replica to take the lease", lambda: kube.story(OPERATOR_NS))
    wait_for(lambda: status(kube, "ha", namespace).get("rendezvous", {}).get("worldSize") == 6, 240,
             "world size 6", lambda: kube.story(namespace))  # fmt: skip
    assert_converged(kube, namespace, "ha", ["ha-rdzv-g1", "ha-worker-0", "ha-worker-1", "ha-worker-2"])
    st = finish(kube, namespace, "ha", 6, RUNWAY_STEPS)
    assert st["restarts"]["total"] == 0
    leader_and_standby(kube)  # two ready replicas again, one of them leading


@pytest.mark.kind("a process stopped in a real container, with the kubelet's liveness probe running")
def test_hung_leader_is_replaced_and_stands_down_when_it_wakes(two_replicas: Kube, namespace: str) -> None:
    kube = two_replicas
    leader, standby = leader_and_standby(kube)
    before = restarts(kube, leader)
    start(kube, namespace, "hung", RUNWAY_STEPS, replicas=2, max_replicas=2)
    assert kube.signal_pod(OPERATOR_NS, leader, signal.SIGSTOP), f"no process of {leader} found"
    stopped = time.monotonic()
    try:
        kube.run("scale", "ej", "hung", "-n", namespace, "--replicas=1")  # work only a live leader can do
        wait_for(lambda: holder(kube) == standby, 40, f"{standby} to take the expired lease",
                 lambda: kube.story(OPERATOR_NS))  # fmt: skip
        took = time.monotonic() - stopped
    finally:
        # woken before its liveness probe (3 x 10 s) would have the kubelet restart it
        kube.signal_pod(OPERATOR_NS, leader, signal.SIGCONT)
    # drained and gone: the worker's pod must not only be Terminating
    wait_for(lambda: sorted(p["metadata"]["name"] for p in kube.json("get", "pods", "-n", namespace)["items"]) ==
             ["hung-rdzv-g1", "hung-worker-0"], 90, "the new leader to scale hung down",
             lambda: kube.story(namespace))  # fmt: skip
    # 15 s lease, counted from the last renewal the standby saw, which may precede the stop by a
    # retry period (2 s, jittered up to 2.4 s): the standby may not take it sooner than that
    assert took >= 15 - 2.4, took
    # awake, the old leader sees its lease gone: it reconciles nothing, exits and comes back as a standby
    wait_for(lambda: restarts(kube, leader) > before, 60, f"{leader} to stand down",
             lambda: kube.story(OPERATOR_NS))  # fmt: skip
    assert holder(kube) == standby
    assert "lost lease" in kube.pod_log(OPERATOR_NS, leader, container="operator", previous=True)
    assert_converged(kube, namespace, "hung", ["hung-rdzv-g1", "hung-worker-0"])
    finish(kube, namespace, "hung", 2, RUNWAY_STEPS)
    assert leader_and_standby(kube) == (standby, leader)

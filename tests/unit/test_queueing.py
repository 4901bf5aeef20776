"""Kueue's protocol as the planner plays it: the Workload, queued, admitted, evicted, finished (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from elasticjob_api.models import ElasticJob
from elasticjob_operator import builders, queueing
from elasticjob_operator.planner import Observed, Plan, WorkloadAction, plan

from .conftest import make_job

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
FLAVORS = {"gpu-a": {"nodeLabels": {"pool": "a100"}, "tolerations": [{"key": "gpu", "operator": "Exists"}]}}


def queued_job(status: dict[str, Any] | None = None, **spec: Any) -> ElasticJob:
    body = make_job(spec, status)
    body["metadata"]["labels"] = {queueing.QUEUE_LABEL: "team-a-queue"}
    return ElasticJob.model_validate(body)


def cond(ctype: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T11:00:00Z",
    }


def workload(
    j: ElasticJob, conditions: list[dict[str, Any]], admission: dict[str, Any] | None = None
) -> dict[str, Any]:
    wl = queueing.essentials(queueing.build_workload(j))
    wl["metadata"].update(resourceVersion="7", generation=1)
    wl["status"] = {"conditions": conditions, **({"admission": admission} if admission else {})}
    return wl


def admitted(j: ElasticJob, workers: int) -> dict[str, Any]:
    return workload(
        j,
        [cond("QuotaReserved", "True", "QuotaReserved"), cond("Admitted", "True", "Admitted")],
        {
            "clusterQueue": "cq",
            "podSetAssignments": [
                {"name": "workers", "flavors": {"cpu": "gpu-a", "memory": "gpu-a"}, "count": workers},
                {"name": "store", "flavors": {"cpu": "gpu-a"}, "count": 1},
            ],
        },
    )


def run(j: ElasticJob, wl: dict[str, Any] | None, pods: list[dict[str, Any]] | None = None) -> Plan:
    state = queueing.QueueState("team-a-queue", wl, FLAVORS)
    return plan(j, Observed(pods=pods or [], nodes_not_ready_since={}, now=NOW, queue=state))


def condition(p: Plan, ctype: str) -> dict[str, Any]:
    return next(c for c in p.status["conditions"] if c["type"] == ctype)


def running_pod(pod: dict[str, Any]) -> dict[str, Any]:
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    return pod


def test_the_workload_has_a_worker_podset_with_partial_admission_and_a_store_podset() -> None:
    j = queued_job()
    wl = queueing.build_workload(j, queueing.Priority("WorkloadPriorityClass", "high", 1000))
    assert wl["apiVersion"] == "kueue.x-k8s.io/v1beta2"
    assert (
        wl["metadata"]["name"].startswith("elasticjob-mnist-")
        and len(wl["metadata"]["name"]) == len("elasticjob-mnist-") + 5
    )
    assert wl["metadata"]["finalizers"] == [queueing.FINALIZER]
    assert wl["metadata"]["ownerReferences"][0]["controller"] is True
    workers, store = wl["spec"]["podSets"]
    assert (workers["name"], workers["count"], workers["minCount"]) == ("workers", 2, 1)
    assert (store["name"], store["count"], "minCount" in store) == ("store", 1, False)
    # the requests Kueue counts are those of the pods that will run
    trainer = next(c for c in workers["template"]["spec"]["containers"] if c["name"] == "trainer")
    assert trainer["resources"]["requests"] == {"cpu": "1500m", "memory": "1Gi"}
    assert "elasticjob.io/replica-index" not in workers["template"]["metadata"]["labels"]
    assert wl["spec"]["queueName"] == "team-a-queue"
    assert wl["spec"]["priorityClassRef"] == {
        "group": "kueue.x-k8s.io",
        "kind": "WorkloadPriorityClass",
        "name": "high",
    }
    assert wl["spec"]["priority"] == 1000


def test_no_workload_yet_creates_one_and_runs_nothing() -> None:
    p = run(queued_job(), None)
    assert p.workload == WorkloadAction(create=True)
    assert p.create == []
    assert p.status["phase"] == "Queued" and p.status["startTime"] is None
    assert condition(p, "Admitted")["status"] == "False"


def test_waiting_says_the_queue_and_kueues_reason() -> None:
    j = queued_job()
    message = "couldn't assign flavors to pod set workers: insufficient quota for cpu in flavor gpu-a, 3 more needed"
    p = run(j, workload(j, [cond("QuotaReserved", "False", "Pending", message)]))
    assert p.create == [] and p.workload is None
    assert p.status["phase"] == "Queued"
    admitted_cond = condition(p, "Admitted")
    assert admitted_cond["reason"] == "Pending"
    assert "LocalQueue team-a-queue" in admitted_cond["message"] and message in admitted_cond["message"]


def test_admission_caps_the_world_and_places_the_pods_on_the_flavor() -> None:
    j = queued_job(replicas=3)
    p = run(j, admitted(j, 2))
    workers = [m for m in p.create if m["metadata"]["name"].startswith("mnist-worker-")]
    assert [m["metadata"]["name"] for m in workers] == ["mnist-worker-0", "mnist-worker-1"]
    for pod in p.create:
        assert pod["spec"]["nodeSelector"] == {"pool": "a100"}
        assert {"key": "gpu", "operator": "Exists"} in pod["spec"]["tolerations"]
    assert workers[0]["metadata"]["labels"][queueing.PODSET_LABEL] == "workers"
    adm = condition(p, "Admitted")
    assert adm["status"] == "True" and "ClusterQueue cq: 2 of 3 workers" in adm["message"]
    assert any(e.reason == "Admitted" for e in p.events)


def test_eviction_drains_then_gives_the_quota_back_once_no_pod_is_left() -> None:
    j = queued_job(status={"phase": "Running", "workerIndices": [0, 1], "startTime": "2026-01-01T11:00:00Z"})
    wl = admitted(j, 2)
    wl["status"]["conditions"].append(cond("Evicted", "True", "Preempted", "Preempted to accommodate a workload"))
    pods = [running_pod(builders.build_worker_pod(j, i)) for i in (0, 1)]
    draining = run(j, wl, pods)
    assert sorted(d.name for d in draining.delete) == ["mnist-worker-0", "mnist-worker-1"]
    assert all(d.grace_seconds is None for d in draining.delete)  # drained, as on a scale-down
    assert draining.workload is None  # pods still there: the quota stays reserved
    assert draining.status["phase"] == "Queued" and draining.status["startTime"] is None
    assert any(e.reason == "Evicted" for e in draining.events)

    gone = run(j, wl, [])
    assert gone.workload is not None and gone.workload.status is not None
    by_type = {c["type"]: c for c in gone.workload.status["conditions"]}
    assert gone.workload.status["admission"] is None
    assert (by_type["QuotaReserved"]["status"], by_type["QuotaReserved"]["reason"]) == ("False", "Pending")
    assert (by_type["Admitted"]["status"], by_type["Admitted"]["reason"]) == ("False", "NoReservation")
    assert (by_type["Requeued"]["status"], by_type["Requeued"]["reason"]) == ("True", "Preempted")
    assert "replacements" not in gone.status  # nothing counted against backoffLimit


def test_a_finished_job_finishes_its_workload_and_releases_it() -> None:
    j = queued_job(
        status={"phase": "Succeeded", "conditions": [cond("Succeeded", "True", "AllWorkersSucceeded", "done")]}
    )
    p = run(j, admitted(j, 2))
    assert p.workload is not None and p.workload.release
    assert p.workload.status is not None
    finished = next(c for c in p.workload.status["conditions"] if c["type"] == "Finished")
    assert (finished["status"], finished["reason"], finished["message"]) == ("True", "Succeeded", "done")


def test_a_workload_with_stale_counts_and_no_reservation_is_made_again() -> None:
    old = queued_job(replicas=2)
    wl = workload(old, [cond("QuotaReserved", "False", "Pending", "insufficient quota")])
    p = run(queued_job(replicas=3), wl)
    assert p.workload == WorkloadAction(delete=True)


def test_unqueued_jobs_never_touch_kueue() -> None:
    j = ElasticJob.model_validate(make_job())
    p = plan(j, Observed(pods=[], nodes_not_ready_since={}, now=NOW))
    assert p.workload is None and p.status["phase"] == "Created"

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


def run(j: ElasticJob, *wls: dict[str, Any] | None, pods: list[dict[str, Any]] | None = None) -> Plan:
    state = queueing.QueueState("team-a-queue", tuple(w for w in wls if w is not None), FLAVORS)
    return plan(j, Observed(pods=pods or [], nodes_not_ready_since={}, now=NOW, queue=state))


def condition(p: Plan, ctype: str) -> dict[str, Any]:
    return next(c for c in p.status["conditions"] if c["type"] == ctype)


def running_pod(pod: dict[str, Any]) -> dict[str, Any]:
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    return pod


def test_the_workload_has_a_worker_podset_with_partial_admission_and_a_store_podset() -> None:
    j = queued_job()
    wl = queueing.with_priority(queueing.build_workload(j), queueing.Priority("WorkloadPriorityClass", "high", 1000))
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
    j = queued_job()
    p = run(j)
    assert p.workloads == [WorkloadAction(queueing.build_workload(j), create=True)]
    assert p.create == []
    assert p.status["phase"] == "Queued" and p.status["startTime"] is None
    assert condition(p, "Admitted")["status"] == "False"


def test_waiting_says_the_queue_and_kueues_reason() -> None:
    j = queued_job()
    message = "couldn't assign flavors to pod set workers: insufficient quota for cpu in flavor gpu-a, 3 more needed"
    p = run(j, workload(j, [cond("QuotaReserved", "False", "Pending", message)]))
    assert p.create == [] and p.workloads == []
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
    draining = run(j, wl, pods=pods)
    assert sorted(d.name for d in draining.delete) == ["mnist-worker-0", "mnist-worker-1"]
    assert all(d.grace_seconds is None for d in draining.delete)  # drained, as on a scale-down
    assert draining.workloads == []  # pods still there: the quota stays reserved
    assert draining.status["phase"] == "Queued" and draining.status["startTime"] is None
    assert any(e.reason == "Evicted" for e in draining.events)

    gone = run(j, wl, pods=[])
    [cleared] = gone.workloads
    assert cleared.status is not None and not cleared.release
    by_type = {c["type"]: c for c in cleared.status["conditions"]}
    assert cleared.status["admission"] is None
    assert (by_type["QuotaReserved"]["status"], by_type["QuotaReserved"]["reason"]) == ("False", "Pending")
    assert (by_type["Admitted"]["status"], by_type["Admitted"]["reason"]) == ("False", "NoReservation")
    assert (by_type["Requeued"]["status"], by_type["Requeued"]["reason"]) == ("True", "Preempted")
    assert "replacements" not in gone.status  # nothing counted against backoffLimit


def test_a_finished_job_finishes_its_workload_and_releases_it() -> None:
    j = queued_job(
        status={"phase": "Succeeded", "conditions": [cond("Succeeded", "True", "AllWorkersSucceeded", "done")]}
    )
    p = run(j, admitted(j, 2))
    [done] = p.workloads
    assert done.release and done.status is not None
    finished = next(c for c in done.status["conditions"] if c["type"] == "Finished")
    assert (finished["status"], finished["reason"], finished["message"]) == ("True", "Succeeded", "done")


def test_a_workload_with_stale_counts_and_no_reservation_is_made_again() -> None:
    old = queued_job(replicas=2)
    wl = workload(old, [cond("QuotaReserved", "False", "Pending", "insufficient quota")])
    p = run(queued_job(replicas=3), wl)
    assert p.workloads == [WorkloadAction(wl, release=True, delete=True)]


def test_unqueued_jobs_never_touch_kueue() -> None:
    j = ElasticJob.model_validate(make_job())
    p = plan(j, Observed(pods=[], nodes_not_ready_since={}, now=NOW))
    assert p.workloads == [] and p.status["phase"] == "Created"


def extension(j: ElasticJob, number: int, count: int, workers: int | None = None) -> dict[str, Any]:
    """Extension `number` of `count` workers; `workers`: admitted with that many (None: pending)."""
    wl = queueing.essentials(queueing.build_extension(j, number, count))
    wl["metadata"].update(resourceVersion="9", generation=1)
    if workers is None:
        wl["status"] = {"conditions": [cond("QuotaReserved", "False", "Pending", "insufficient quota")]}
    else:
        wl["status"] = {
            "conditions": [cond("QuotaReserved", "True", "QuotaReserved"), cond("Admitted", "True", "Admitted")],
            "admission": {"clusterQueue": "cq", "podSetAssignments": [
                {"name": "workers", "flavors": {"cpu": "gpu-a"}, "count": workers}]},
        }  # fmt: skip
    return wl


def test_partial_admission_asks_for_the_rest_with_one_extension() -> None:
    j = queued_job(replicas=3, maxReplicas=4)
    p = run(j, admitted(j, 2))
    [ask] = p.workloads
    assert ask.create and ask.workload["metadata"]["name"] == queueing.workload_name(j, 1)
    assert ask.workload["metadata"]["labels"][queueing.EXTENSION_LABEL] == "1"
    [workers] = ask.workload["spec"]["podSets"]
    assert (workers["name"], workers["count"], "minCount" in workers) == ("workers", 1, False)
    # pending: no second one
    assert run(j, admitted(j, 2), extension(j, 1, 1)).workloads == []


def test_an_admitted_extension_grows_the_world() -> None:
    j = queued_job(replicas=3, maxReplicas=4)
    p = run(j, admitted(j, 2), extension(j, 1, 1, workers=1))
    assert sorted(m["metadata"]["name"] for m in p.create if "worker" in m["metadata"]["name"]) == [
        "mnist-worker-0", "mnist-worker-1", "mnist-worker-2"]  # fmt: skip
    assert p.workloads == []
    assert "3 of 3 workers" in condition(p, "Admitted")["message"]


def test_scaled_down_below_an_extension_it_is_finished_once_its_workers_are_gone() -> None:
    before = queued_job(replicas=3, maxReplicas=4)
    j = queued_job(replicas=2, maxReplicas=4)
    ext = extension(before, 1, 1, workers=1)
    pods = [running_pod(builders.build_worker_pod(j, i)) for i in (0, 1, 2)]
    draining = run(j, admitted(before, 2), ext, pods=pods)
    assert [d.name for d in draining.delete] == ["mnist-worker-2"] and draining.workloads == []
    message = condition(draining, "Admitted")["message"]
    assert "2 of 2 workers (1 more admitted, given back once drained)" in message, message
    gone = run(j, admitted(before, 2), ext, pods=pods[:2])
    [done] = gone.workloads
    assert done.release and done.status is not None
    assert any(c["type"] == "Finished" and c["status"] == "True" for c in done.status["conditions"])


def test_an_evicted_extension_takes_only_its_workers_and_is_made_again() -> None:
    j = queued_job(replicas=3, maxReplicas=4)
    ext = extension(j, 1, 1, workers=1)
    ext["status"]["conditions"].append(cond("Evicted", "True", "Preempted", "preempted"))
    pods = [running_pod(builders.build_worker_pod(j, i)) for i in (0, 1, 2)]
    p = run(j, admitted(j, 2), ext, pods=pods)
    assert [d.name for d in p.delete] == ["mnist-worker-2"] and p.workloads == []
    assert p.status["phase"] != "Queued"
    gone = run(j, admitted(j, 2), ext, pods=pods[:2])
    assert gone.workloads == [WorkloadAction(ext, release=True, delete=True)]


def test_a_suspended_job_drains_then_deletes_its_workloads_and_queues_afresh_when_resumed() -> None:
    j = queued_job(replicas=3, maxReplicas=4, suspend=True, status={"phase": "Running", "workerIndices": [0, 1]})
    base, ext = admitted(j, 2), extension(j, 1, 1, workers=1)
    pods = [running_pod(builders.build_worker_pod(j, i)) for i in (0, 1, 2)]
    draining = run(j, base, ext, pods=pods)
    assert sorted(d.name for d in draining.delete) == ["mnist-worker-0", "mnist-worker-1", "mnist-worker-2"]
    assert draining.workloads == []  # the quota is held while the pods drain
    suspended = condition(draining, "Admitted")
    assert (suspended["status"], suspended["reason"]) == ("False", "Suspended") and "quota" in suspended["message"]

    gone = run(j, base, ext, pods=[])
    assert gone.workloads == [
        WorkloadAction(base, release=True, delete=True),
        WorkloadAction(ext, release=True, delete=True),
    ]
    assert gone.status["phase"] == "Suspended"
    resumed = queued_job(replicas=3, maxReplicas=4, status=gone.status)
    [made] = run(resumed).workloads
    assert made.create and run(resumed).status["phase"] == "Queued"

"""The planner: pods in every phase and mix -> actions and status (no cluster, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from elasticjob_api.models import ElasticJob
from elasticjob_operator import builders
from elasticjob_operator import pods as podinfo
from elasticjob_operator.conditions import set_condition
from elasticjob_operator.planner import Observed, Plan, plan

from .conftest import make_job

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
ISO = "2026-01-01T11:59:00Z"


def job(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> ElasticJob:
    return ElasticJob.model_validate(make_job(spec, status))


def worker(j: ElasticJob, index: int, phase: str = "Running", *, ready: bool = True, **extra: Any) -> dict[str, Any]:
    pod = builders.build_worker_pod(j, index)
    pod["spec"]["nodeName"] = extra.pop("node", "node-a")
    pod["status"] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready and phase == "Running" else "False"}],
        **extra,
    }
    return pod


def store(j: ElasticJob, generation: int = 1, phase: str = "Running", *, ready: bool = True) -> dict[str, Any]:
    pod = builders.build_store_pod(j, generation)
    pod["spec"]["nodeName"] = "node-a"
    pod["status"] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return pod


def terminated(exit_code: int, reason: str = "Error") -> dict[str, Any]:
    return {
        "containerStatuses": [{"name": "trainer", "state": {"terminated": {"exitCode": exit_code, "reason": reason}}}]
    }


def run(j: ElasticJob, pods: list[dict[str, Any]], not_ready: dict[str, datetime] | None = None) -> Plan:
    return plan(j, Observed(pods=pods, nodes_not_ready_since=not_ready or {}, now=NOW))


def names(manifests: list[dict[str, Any]]) -> list[str]:
    return [m["metadata"]["name"] for m in manifests]


def running_status(**extra: Any) -> dict[str, Any]:
    return {
        "phase": "Running",
        "workerIndices": [0, 1],
        "startTime": ISO,
        "rendezvous": {"storeGeneration": 1},
        **extra,
    }


def test_new_job_creates_store_and_workers() -> None:
    p = run(job(), [])
    assert names(p.create) == ["mnist-rdzv-g1", "mnist-worker-0", "mnist-worker-1"]
    assert p.status["phase"] == "Created"
    assert p.status["selector"] == "elasticjob.io/job-name=mnist,elasticjob.io/role=worker"
    assert p.status["startTime"] == "2026-01-01T12:00:00Z"


def test_all_running_is_running_and_idempotent() -> None:
    j = job(status=running_status())
    pods = [store(j), worker(j, 0), worker(j, 1)]
    p = run(j, pods)
    assert p.create == [] and p.delete == []
    assert p.status["phase"] == "Running"
    assert p.status["replicas"] == 2 and p.status["readyReplicas"] == 2
    assert run(j, pods).status == p.status


def test_pending_workers_wait_with_the_schedulers_reason() -> None:
    j = job({"minReplicas": 2}, status=running_status())
    pending = worker(j, 1, "Pending")
    pending["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        }
    ]
    p = run(j, [store(j), worker(j, 0), pending])
    assert p.status["phase"] == "WaitingForRendezvous"
    cond = next(c for c in p.status["conditions"] if c["type"] == "WaitingForRendezvous")
    assert "mnist-worker-1: Pending: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu." in cond["message"]


def test_scale_down_drains_highest_indices() -> None:
    j = job({"replicas": 1}, status=running_status())
    p = run(j, [store(j), worker(j, 0), worker(j, 1)])
    assert [(d.name, d.grace_seconds) for d in p.delete] == [("mnist-worker-1", None)]
    assert p.status["phase"] == "Scaling"
    assert [e.reason for e in p.events] == ["ScalingDown"]
    assert p.status["replacements"] == 0


def test_scale_up_creates_missing_indices() -> None:
    j = job({"replicas": 3}, status=running_status())
    p = run(j, [store(j), worker(j, 0), worker(j, 1)])
    assert names(p.create) == ["mnist-worker-2"]
    assert p.status["phase"] == "Scaling"
    assert [e.reason for e in p.events] == ["ScalingUp"]


def test_deleted_worker_is_replaced_and_counted() -> None:
    j = job(status=running_status())
    p = run(j, [store(j), worker(j, 0)])
    assert names(p.create) == ["mnist-worker-1"]
    assert p.status["replacements"] == 1
    assert {e.reason for e in p.events} == {"WorkerLost", "ReplacingWorker"}


def test_terminating_worker_name_is_not_reused_until_gone() -> None:
    j = job(status=running_status())
    gone = worker(j, 1)
    gone["metadata"]["deletionTimestamp"] = ISO
    p = run(j, [store(j), worker(j, 0), gone])
    assert p.create == []
    assert p.status["replacements"] == 1


def test_retryable_failure_replaces_pod() -> None:
    j = job(status=running_status())
    failed = worker(j, 1, "Failed", **terminated(75))
    p = run(j, [store(j), worker(j, 0), failed])
    assert [(d.name, d.grace_seconds) for d in p.delete] == [("mnist-worker-1", 0)]
    assert p.status["replacements"] == 1
    assert p.status["phase"] != "Failed"


def test_user_error_fails_the_job_and_cleans_running_pods() -> None:
    j = job(status=running_status())
    failed = worker(j, 1, "Failed", **terminated(3))
    p = run(j, [store(j), worker(j, 0), failed])
    assert p.status["phase"] == "Failed"
    cond = next(c for c in p.status["conditions"] if c["type"] == "Failed")
    assert cond["reason"] == "UserError" and "exit code 3" in cond["message"]
    # cleanPodPolicy Running: the running store and worker go, the failed pod stays for its logs
    assert sorted(d.name for d in p.delete) == ["mnist-rdzv-g1", "mnist-worker-0"]
    assert p.create == []


def test_oom_killed_fails_by_default_but_rules_can_retry() -> None:
    j = job(status=running_status())
    oom = worker(j, 1, "Failed", **terminated(137, "OOMKilled"))
    assert run(j, [store(j), worker(j, 0), oom]).status["phase"] == "Failed"
    j2 = job({"failurePolicy": {"rules": [{"failureClass": "OOMKilled", "action": "Retry"}]}}, status=running_status())
    oom2 = worker(j2, 1, "Failed", **terminated(137, "OOMKilled"))
    assert run(j2, [store(j2), worker(j2, 0), oom2]).status["phase"] != "Failed"


def disrupted(reason: str = "PreemptionByScheduler") -> dict[str, Any]:
    return {"type": "DisruptionTarget", "status": "True", "reason": reason}


def test_preempted_worker_is_replaced_without_counting() -> None:
    j = job({"failurePolicy": {"backoffLimit": 0}}, status=running_status())
    going = worker(j, 1)
    going["metadata"]["deletionTimestamp"] = ISO
    going["status"]["conditions"].append(disrupted())
    p = run(j, [store(j), worker(j, 0), going])
    assert p.status["replacements"] == 0 and p.status["phase"] != "Failed"
    assert [(e.type, e.reason) for e in p.events] == [("Normal", "WorkerDisrupted")]
    assert "PreemptionByScheduler" in p.events[0].message
    # once it is gone, its index is created again (Pending until capacity returns), still uncounted
    j = job({"failurePolicy": {"backoffLimit": 0}}, status=running_status(workerIndices=[0]))
    p = run(j, [store(j), worker(j, 0)])
    assert names(p.create) == ["mnist-worker-1"] and p.status["replacements"] == 0


def test_a_disrupted_pod_gone_before_any_reconcile_saw_it_go_is_not_counted() -> None:
    j = job({"failurePolicy": {"backoffLimit": 0}}, status=running_status())
    seen = Observed(pods=[store(j), worker(j, 0)], nodes_not_ready_since={}, now=NOW,
                    gone_disrupted={"mnist-worker-1": "PreemptionByScheduler"})  # fmt: skip
    p = plan(j, seen)
    assert p.status["replacements"] == 0 and p.status["phase"] != "Failed"
    assert "WorkerDisrupted" in {e.reason for e in p.events}
    # without that memory the same observation counts a replacement, and backoffLimit 0 fails it
    assert run(j, [store(j), worker(j, 0)]).status["phase"] == "Failed"


def test_an_evicted_pod_is_not_a_failure_whatever_the_rules() -> None:
    rules = [{"failureClass": "Signal", "action": "Fail"}]
    j = job({"failurePolicy": {"backoffLimit": 0, "rules": rules}}, status=running_status())
    evicted = worker(j, 1, "Failed", reason="Evicted", **terminated(137))
    evicted["status"]["conditions"].append(disrupted("TerminationByKubelet"))
    p = run(j, [store(j), worker(j, 0), evicted])
    assert p.status["phase"] != "Failed" and p.status["replacements"] == 0
    assert [(d.name, d.grace_seconds) for d in p.delete] == [("mnist-worker-1", 0)]
    lost = next(e for e in p.events if e.reason == "WorkerLost")
    assert "TerminationByKubelet" in lost.message and "not counted" in lost.message


def test_exit_code_rules_see_the_scripts_own_code_behind_the_launchers_3() -> None:
    rules = [{"onExitCodes": {"operator": "In", "values": [42]}, "action": "Ignore"}]
    report = {"mnist-worker-1": {"restarts": 3, "lastFailure": {"globalRank": 2, "exitCode": 42}}}
    j = job({"failurePolicy": {"rules": rules}}, status=running_status(restarts={"total": 3, "workers": report}))
    failed = worker(j, 1, "Failed", **terminated(3))
    p = run(j, [store(j), worker(j, 0), failed])
    assert p.status["phase"] != "Failed" and p.status["replacements"] == 0  # UserError, but ignored
    assert [d.name for d in p.delete] == ["mnist-worker-1"]
    # without the report the rule sees the container's 3: no match, UserError's default Fail
    j = job({"failurePolicy": {"rules": rules}}, status=running_status())
    p = run(j, [store(j), worker(j, 0), worker(j, 1, "Failed", **terminated(3))])
    assert p.status["phase"] == "Failed"
    # a report of another code: no match either, and the condition names both codes
    report = {"mnist-worker-1": {"restarts": 3, "lastFailure": {"globalRank": 2, "exitCode": 1}}}
    j = job({"failurePolicy": {"rules": rules}}, status=running_status(restarts={"total": 3, "workers": report}))
    p = run(j, [store(j), worker(j, 0), worker(j, 1, "Failed", **terminated(3))])
    failed = next(c for c in p.status["conditions"] if c["type"] == "Failed")
    assert "(UserError, exit code 3, the script's 1)" in failed["message"], failed


def test_exit_code_rules_can_fail_what_a_class_would_retry() -> None:
    rules = [{"onExitCodes": {"operator": "In", "values": [75]}, "action": "Fail"}]
    j = job({"failurePolicy": {"rules": rules}}, status=running_status())
    p = run(j, [store(j), worker(j, 0), worker(j, 1, "Failed", **terminated(75))])
    failed = next(c for c in p.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "StoreLost" and "exit code 75" in failed["message"]


def test_backoff_limit_exceeded_fails() -> None:
    j = job({"failurePolicy": {"backoffLimit": 1}}, status=running_status(replacements=1))
    p = run(j, [store(j), worker(j, 0)])
    assert p.status["phase"] == "Failed"
    failed = next(c for c in p.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded" and "backoffLimit is 1" in failed["message"]


def test_lost_store_is_recreated_with_next_generation() -> None:
    j = job(status=running_status())
    p = run(j, [worker(j, 0), worker(j, 1)])
    assert names(p.create) == ["mnist-rdzv-g2"]
    assert p.status["rendezvous"]["storeGeneration"] == 1  # until the new store is seen
    assert [e.reason for e in p.events] == ["StoreRecreated"]
    seen = run(job(status=running_status()), [store(j, 2), worker(j, 0), worker(j, 1)])
    assert seen.create == [] and seen.status["rendezvous"]["storeGeneration"] == 2


def test_a_store_created_but_not_seen_yet_is_not_taken_for_lost() -> None:
    first = run(job(), [])
    assert "mnist-rdzv-g1" in names(first.create)
    assert first.status["rendezvous"]["storeGeneration"] == 0
    # the next reconcile runs before the watch delivered the new pods: same plan, no new generation
    again = run(job(status=first.status), [])
    assert "mnist-rdzv-g1" in names(again.create)
    assert "StoreRecreated" not in [e.reason for e in again.events]


def test_store_generation_is_derived_from_pods_after_operator_restart() -> None:
    j = job(status={"phase": "Running", "workerIndices": [0, 1], "startTime": ISO})
    p = run(j, [store(j, 4), worker(j, 0), worker(j, 1)])
    assert p.create == []
    assert p.status["rendezvous"]["storeGeneration"] == 4


def test_pod_on_lost_node_is_force_replaced_after_grace() -> None:
    j = job(status=running_status())
    pods = [store(j), worker(j, 0), worker(j, 1, node="node-b")]
    early = run(j, pods, {"node-b": NOW - timedelta(seconds=5)})
    assert early.delete == []
    late = run(j, pods, {"node-b": NOW - timedelta(seconds=60)})
    assert [(d.name, d.grace_seconds) for d in late.delete] == [("mnist-worker-1", 0)]
    assert any("NodeLost" in e.message for e in late.events)


def test_recheck_at_is_when_a_time_based_decision_comes_due() -> None:
    j = job(status=running_status())
    pods = [store(j), worker(j, 0), worker(j, 1, node="node-b")]
    assert run(j, pods).recheck_at is None  # nothing depends on the clock
    early = run(j, pods, {"node-b": NOW - timedelta(seconds=5), "node-c": NOW - timedelta(seconds=1)})
    assert early.recheck_at == NOW + timedelta(seconds=25)  # node-b's grace; no pod of the job is on node-c
    assert not early.acts
    deadline = job({"activeDeadlineSeconds": 300}, status=running_status())
    assert run(deadline, pods).recheck_at == datetime(2026, 1, 1, 12, 4, 0, tzinfo=UTC)
    finished = job({"ttlSecondsAfterFinished": 600}, status={"phase": "Succeeded", "completionTime": ISO})
    p = run(finished, [])
    assert not p.delete_job and not p.acts
    assert p.recheck_at == datetime(2026, 1, 1, 12, 9, 0, tzinfo=UTC)


def test_success_when_workers_succeeded() -> None:
    j = job(status=running_status())
    p = run(j, [store(j), worker(j, 0, "Succeeded"), worker(j, 1, "Succeeded")])
    assert p.status["phase"] == "Succeeded"
    assert p.status["completionTime"] == "2026-01-01T12:00:00Z"
    assert [d.name for d in p.delete] == ["mnist-rdzv-g1"]
    assert p.create == []
    # REPLICAS keeps the final round's pod count, also once cleanPodPolicy removed the pods
    assert (p.status["replicas"], p.status["readyReplicas"]) == (2, 0)
    later = run(job(status=p.status), [])
    assert later.status["replicas"] == 2


def test_restarts_reported_by_launchers_are_aggregated() -> None:
    workers = {
        "mnist-worker-0": {"restarts": 2, "round": 3, "worldSize": 4},
        "mnist-worker-1": {
            "restarts": 2,
            "round": 3,
            "worldSize": 4,
            "lastFailure": {"globalRank": 3, "exitCode": 1, "failureClass": "UserError", "time": ISO},
        },
    }
    j = job(status=running_status(restarts={"total": 1, "workers": workers}))
    p = run(j, [store(j), worker(j, 0), worker(j, 1)])
    assert p.status["restarts"] == {"total": 2}
    assert p.status["phase"] == "Restarting"
    assert p.status["rendezvous"]["round"] == 3 and p.status["rendezvous"]["worldSize"] == 4
    assert p.status["rendezvous"]["joinedNodes"] == ["mnist-worker-0", "mnist-worker-1"]
    event = next(e for e in p.events if e.reason == "WorkerGroupRestarted")
    assert "rank 3 exited with 1" in event.message


def test_max_restarts_exceeded_fails() -> None:
    workers = {"mnist-worker-0": {"restarts": 4}}
    j = job({"maxRestarts": 3}, status=running_status(restarts={"total": 3, "workers": workers}))
    assert run(j, [store(j), worker(j, 0), worker(j, 1)]).status["phase"] == "Failed"


def test_suspend_deletes_pods() -> None:
    j = job({"suspend": True}, status=running_status())
    p = run(j, [store(j), worker(j, 0), worker(j, 1)])
    assert len(p.delete) == 3 and p.status["phase"] == "Suspended"


def test_deadline_exceeded_fails() -> None:
    j = job({"activeDeadlineSeconds": 30}, status=running_status())
    assert run(j, [store(j), worker(j, 0), worker(j, 1)]).status["phase"] == "Failed"


def test_finished_job_ttl_deletes_job() -> None:
    j = job(
        {"ttlSecondsAfterFinished": 10},
        status={"phase": "Succeeded", "completionTime": "2026-01-01T11:59:00Z"},
    )
    assert run(j, []).delete_job


def test_clean_pod_policy_all_and_none() -> None:
    for policy, expected in (("All", 2), ("None", 0)):
        j = job({"cleanPodPolicy": policy}, status={"phase": "Failed"})
        assert len(run(j, [store(j), worker(j, 0, "Failed")]).delete) == expected


def test_conditions_keep_transition_times() -> None:
    j = job(status=running_status(conditions=[{"type": "Running", "status": "True", "lastTransitionTime": ISO}]))
    p = run(j, [store(j), worker(j, 0), worker(j, 1)])
    running = next(c for c in p.status["conditions"] if c["type"] == "Running")
    assert running["lastTransitionTime"] == ISO


def test_other_conditions_outlive_phase_changes() -> None:
    gang = {
        "type": "GangScheduling",
        "status": "True",
        "reason": "PodGroupCreated",
        "message": "",
        "lastTransitionTime": ISO,
    }
    j = job(status=running_status(conditions=[gang]))
    p = run(j, [store(j), worker(j, 0), worker(j, 1, "Pending", ready=False)])
    assert gang in p.status["conditions"]  # kept, and not turned False by the phase change
    later = set_condition(p.status["conditions"], {**gang, "status": "False", "reason": "GangSchedulerMissing"}, "t2")
    changed = next(c for c in later if c["type"] == "GangScheduling")
    assert (
        changed["status"] == "False"
        and changed["lastTransitionTime"] == "t2"
        and len(later) == len(p.status["conditions"])
    )


def test_partial_capacity_runs_and_says_what_the_rest_waits_for() -> None:
    j = job(spec={"minReplicas": 1}, status=running_status())
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    }
    pending = worker(j, 1, "Pending", conditions=[unschedulable])
    p = run(j, [store(j), worker(j, 0), pending])
    assert p.status["phase"] == "Running"
    running = next(c for c in p.status["conditions"] if c["type"] == "Running")
    assert running["message"] == (
        "1 of 2 workers running; waiting for mnist-worker-1: Pending: 0/3 nodes are available: "
        "3 Insufficient nvidia.com/gpu."
    )


def test_the_index_keeps_all_the_planner_reads_of_a_pod() -> None:
    j = job(status=running_status(workerIndices=[0, 1, 2]))
    pods = [
        store(j),
        worker(j, 0),
        worker(j, 1, "Failed", **terminated(137, "OOMKilled")),
        worker(j, 2, node="node-b"),
    ]
    pods[3]["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:30Z"
    slim = [podinfo.essentials(p) for p in pods]
    assert all("containers" not in p.get("spec", {}) for p in slim)
    for not_ready in ({}, {"node-b": NOW - timedelta(seconds=60)}):
        assert run(j, slim, not_ready) == run(j, pods, not_ready)

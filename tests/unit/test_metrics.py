"""The operator's metrics: what moves them, read back through prometheus-client's own parser."""

from __future__ import annotations

from typing import Any

from elasticjob_operator.metrics import Metrics
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def job(name: str, phase: str | None = None, world: int | None = None, reason: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status = {"phase": phase, "conditions": [{"type": phase, "status": "True", "reason": reason}]}
    if world is not None:
        status["rendezvous"] = {"worldSize": world}
    return {"metadata": {"namespace": "ns", "name": name}, "status": status}


def test_jobs_by_phase_world_size_and_finished_follow_the_watch() -> None:
    m = Metrics()
    m.job_event(None, job("listed", "Running", 4))  # the initial listing: not a creation
    m.job_event("ADDED", job("new"))
    m.job_event("MODIFIED", job("new", "Running", 2))
    m.job_event("MODIFIED", job("new", "Succeeded", 2, reason="Completed"))
    m.job_event("MODIFIED", job("new", "Succeeded", 2, reason="Completed"))  # seen again: counted once
    got = samples(m)
    assert got[("elasticjob_jobs_created_total", ())] == 1
    assert got[("elasticjob_jobs", (("phase", "Running"),))] == 1
    assert got[("elasticjob_jobs", (("phase", "Succeeded"),))] == 1
    assert got[("elasticjob_jobs", (("phase", "Failed"),))] == 0
    assert got[("elasticjob_jobs_finished_total", (("reason", "Completed"), ("result", "Succeeded")))] == 1
    assert got[("elasticjob_job_world_size", (("job", "listed"), ("namespace", "ns")))] == 4
    m.job_event("DELETED", job("listed", "Running", 4))
    got = samples(m)
    assert ("elasticjob_job_world_size", (("job", "listed"), ("namespace", "ns"))) not in got
    assert got[("elasticjob_jobs", (("phase", "Running"),))] == 0


def test_decisions_requests_reconciles_and_leadership() -> None:
    leading = [True]
    m = Metrics(leading=lambda: leading[0])
    for reason, cause in [("WorkerLost", "OOMKilled"), ("WorkerLost", "Deleted"), ("WorkerDisrupted", "Disrupted"),
                          ("WorkerGroupRestarted", ""), ("StoreRecreated", ""), ("Stalled", "Hang"),
                          ("ScalingUp", "")]:  # fmt: skip
        m.decided(reason, cause)
    m.request("create", 201)
    m.request("create", 409)
    with m.reconciling():
        pass
    try:
        with m.reconciling():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    got = samples(m)
    assert got[("elasticjob_worker_replacements_total", (("failure_class", "OOMKilled"),))] == 1
    assert got[("elasticjob_worker_replacements_total", (("failure_class", "Deleted"),))] == 1
    assert got[("elasticjob_worker_replacements_total", (("failure_class", "Disrupted"),))] == 1
    assert got[("elasticjob_worker_group_restarts_total", ())] == 1
    assert got[("elasticjob_store_recreations_total", ())] == 1
    assert got[("elasticjob_hangs_total", ())] == 1
    assert got[("elasticjob_apiserver_requests_total", (("code", "409"), ("verb", "create")))] == 1
    assert got[("elasticjob_reconcile_duration_seconds_count", ())] == 2
    assert got[("elasticjob_reconcile_errors_total", ())] == 1
    assert got[("elasticjob_leader", ())] == 1
    leading[0] = False
    assert samples(m)[("elasticjob_leader", ())] == 0

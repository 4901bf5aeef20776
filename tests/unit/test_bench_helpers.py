"""The pure helpers of the operator-scale benchmark (B4): percentiles and the apiserver's counters."""

from __future__ import annotations

import pytest
from elasticjob_bench.operator_scale import (
    PODS_PER_NODE,
    dispatched,
    nodes_for,
    operator_writes_per_job,
    percentile,
)

METRICS = """\
# HELP apiserver_flowcontrol_dispatched_requests_total [BETA] Number of requests executed
# TYPE apiserver_flowcontrol_dispatched_requests_total counter
apiserver_flowcontrol_dispatched_requests_total{flow_schema="exempt",priority_level="exempt"} 900
apiserver_flowcontrol_dispatched_requests_total{flow_schema="service-accounts",priority_level="workload-low"} 1234
apiserver_flowcontrol_dispatched_requests_total{flow_schema="service-accounts",priority_level="global-default"} 6
apiserver_flowcontrol_dispatched_requests_total{flow_schema="kube-system-service-accounts",priority_level="workload-high"} 77
"""


def test_percentile_is_an_observed_value_by_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0
    assert percentile([], 50) is None


def test_dispatched_sums_one_flow_schema_over_priority_levels() -> None:
    assert dispatched(METRICS, "service-accounts") == 1240
    assert dispatched(METRICS, "exempt") == 900
    assert dispatched(METRICS, "catch-all") == 0


@pytest.mark.parametrize("jobs", [1, 200, 1000])
def test_the_simulated_nodes_hold_every_pod_with_room_to_spare(jobs: int) -> None:
    nodes = nodes_for(jobs)
    assert [n.simulate for n in nodes].count(False) == 1  # the operator's real node
    assert sum(n.max_pods for n in nodes if n.simulate) >= jobs * 3 * 1.2
    assert all(n.max_pods == PODS_PER_NODE for n in nodes if n.simulate)


def _requests(pod_posts: int, status_patches: int, binds: int) -> str:
    return f"""\
apiserver_request_total{{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"}} {pod_posts}
apiserver_request_total{{code="409",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="POST",version="v1"}} 4
apiserver_request_total{{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"}} {binds}
apiserver_request_total{{code="200",component="apiserver",dry_run="",group="elasticjob.io",resource="elasticjobs",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"}} {status_patches}
apiserver_request_total{{code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"}} 500
"""


def test_operator_writes_are_counted_per_job_between_two_scrapes() -> None:
    before, after = _requests(10, 0, 10), _requests(310, 450, 310)
    # pods POST: 300 new, over codes; the scheduler's bindings and events.k8s.io are not the operator's
    assert operator_writes_per_job(before, after, 100) == {"POST pods": 3.0, "PATCH elasticjobs/status": 4.5}


def test_a_later_run_the_same_day_replaces_sections_and_keeps_other_b4_sizes() -> None:
    from elasticjob_bench.__main__ import merge

    def b4(*rows: tuple[int, float]) -> dict[str, object]:
        return {"repeats": 3, "rows": [{"jobs": n, "all_running_s": s} for n, s in rows]}

    box = {"cores": 2}
    earlier = {
        "machine": box,
        "quick": True,
        "runs": [{"args": "--quick"}],
        "b1": "old",
        "b4": b4((200, 30.0)),
        "seconds_by_part": {"b1": 60.0, "b4": 100.0},
    }
    later = {
        "machine": box,
        "quick": False,
        "runs": [{"args": "--only b4"}],
        "b4": b4((1000, 150.0), (200, 31.0)),
        "seconds_by_part": {"b4": 900.0},
    }
    merged = merge(earlier, later)
    assert merged["b1"] == "old"
    assert merged["quick"] and merged["runs"] == [{"args": "--quick"}, {"args": "--only b4"}]
    assert merged["b4"]["rows"] == [{"jobs": 200, "all_running_s": 31.0}, {"jobs": 1000, "all_running_s": 150.0}]
    assert merged["seconds"] == 960.0
    only_1000 = merge(earlier, {"machine": box, "b4": b4((1000, 150.0)), "seconds_by_part": {"b4": 600.0}})
    assert [r["jobs"] for r in only_1000["b4"]["rows"]] == [200, 1000]
    other_machine = {"machine": {"cores": 8}, "seconds_by_part": {}}
    assert merge(earlier, other_machine) is other_machine

"""The timer's short cut: when a reconcile may be skipped because nothing it reads has changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from elasticjob_operator.handlers import Steady, _seen, still_steady

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}}


def seen(job_rv: str = "10", pods: tuple[dict[str, Any], ...] = (), nodes: dict[str, list[Any]] | None = None) -> Any:
    body = kopf.Body({"metadata": {"namespace": "ns", "name": "mnist", "resourceVersion": job_rv}})
    by_job = {("ns", "mnist"): list(pods), ("ns", "other"): [pod("other-worker-0", "99")]}
    return _seen(body, by_job, nodes or {"node-a": [None]})  # type: ignore[arg-type]


def test_same_inputs_before_the_deadline_are_steady() -> None:
    first = seen(pods=(pod("mnist-worker-0", "1"), pod("mnist-rdzv-g1", "2")))
    again = seen(pods=(pod("mnist-rdzv-g1", "2"), pod("mnist-worker-0", "1")))  # index order differs
    steady = Steady(first.key, NOW + timedelta(seconds=60))
    assert still_steady(steady, again, NOW)
    assert not still_steady(steady, again, NOW + timedelta(seconds=60))
    assert not still_steady(None, again, NOW)


def test_any_change_it_reads_ends_the_steady_state() -> None:
    base = seen(pods=(pod("mnist-worker-0", "1"),))
    steady = Steady(base.key, NOW + timedelta(seconds=60))
    changes = [
        seen(job_rv="11", pods=(pod("mnist-worker-0", "1"),)),  # spec, status or a launcher's report
        seen(pods=(pod("mnist-worker-0", "5"),)),  # a pod changed
        seen(pods=(pod("mnist-worker-0", "1"), pod("mnist-worker-1", "6"))),  # a pod appeared
        seen(pods=()),  # a pod went away
        seen(pods=(pod("mnist-worker-0", "1"),), nodes={"node-a": [NOW]}),  # a node went NotReady
    ]
    for changed in changes:
        assert not still_steady(steady, changed, NOW)
    assert seen(nodes={"node-a": [NOW]}).nodes == (("node-a", NOW),)

"""The timer's short cuts: when a reconcile may be skipped (steady, or waiting for the watches)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from elasticjob_operator import pacing

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=5)


def pod(name: str, rv: str, *, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T12:00:01Z"
    return {"metadata": meta}


def seen(job_rv: str = "10", pods: tuple[dict[str, Any], ...] = (), nodes: dict[str, list[Any]] | None = None) -> Any:
    body = {"metadata": {"namespace": "ns", "name": "mnist", "resourceVersion": job_rv}}
    by_job = {("ns", "mnist"): list(pods), ("ns", "other"): [pod("other-worker-0", "99")]}
    return pacing.seen(body, by_job, nodes or {"node-a": [None]})


def test_same_inputs_before_the_deadline_are_steady() -> None:
    first = seen(pods=(pod("mnist-worker-0", "1"), pod("mnist-rdzv-g1", "2")))
    again = seen(pods=(pod("mnist-rdzv-g1", "2"), pod("mnist-worker-0", "1")))  # index order differs
    steady = pacing.steady(first, NOW, recheck_at=None)
    assert pacing.still_steady(steady, again, NOW + pacing.RESYNC - timedelta(seconds=1))
    assert not pacing.still_steady(steady, again, NOW + pacing.RESYNC)
    assert not pacing.still_steady(None, again, NOW)
    due = pacing.steady(first, NOW, recheck_at=LATER)  # e.g. a node's lost-grace runs out
    assert pacing.still_steady(due, again, NOW) and not pacing.still_steady(due, again, LATER)


def test_any_change_it_reads_ends_the_steady_state() -> None:
    steady = pacing.steady(seen(pods=(pod("mnist-worker-0", "1"),)), NOW, recheck_at=None)
    changes = [
        seen(job_rv="11", pods=(pod("mnist-worker-0", "1"),)),  # spec, status or a launcher's report
        seen(pods=(pod("mnist-worker-0", "5"),)),  # a pod changed
        seen(pods=(pod("mnist-worker-0", "1"), pod("mnist-worker-1", "6"))),  # a pod appeared
        seen(pods=()),  # a pod went away
        seen(pods=(pod("mnist-worker-0", "1"),), nodes={"node-a": [NOW]}),  # a node went NotReady
    ]
    for changed in changes:
        assert not pacing.still_steady(steady, changed, NOW)
    assert seen(nodes={"node-a": [NOW]}).nodes == (("node-a", NOW),)


def test_a_status_patch_is_awaited_until_the_job_changes() -> None:
    read = seen(job_rv="10")
    expected = pacing.expect(read, NOW, patched=True, created=(), deleted=())
    assert pacing.waiting_for_watch(expected, seen(job_rv="10"), LATER)
    assert not pacing.waiting_for_watch(expected, seen(job_rv="11"), LATER)
    assert not pacing.waiting_for_watch(expected, seen(job_rv="10"), NOW + pacing.PATIENCE)  # gives up


def test_created_pods_are_awaited_until_all_are_in_the_index() -> None:
    expected = pacing.expect(seen(), NOW, patched=False, created=["mnist-worker-0", "mnist-worker-1"], deleted=())
    assert pacing.waiting_for_watch(expected, seen(), LATER)
    assert pacing.waiting_for_watch(expected, seen(pods=(pod("mnist-worker-0", "3"),)), LATER)
    both = seen(pods=(pod("mnist-worker-0", "3"), pod("mnist-worker-1", "4")))
    assert not pacing.waiting_for_watch(expected, both, LATER)


def test_deleted_pods_are_awaited_until_gone_or_terminating() -> None:
    expected = pacing.expect(seen(), NOW, patched=False, created=(), deleted=["mnist-worker-1"])
    assert pacing.waiting_for_watch(expected, seen(pods=(pod("mnist-worker-1", "3"),)), LATER)
    assert not pacing.waiting_for_watch(expected, seen(pods=(pod("mnist-worker-1", "4", terminating=True),)), LATER)
    assert not pacing.waiting_for_watch(expected, seen(pods=()), LATER)


def test_nothing_written_expects_nothing() -> None:
    assert pacing.expect(seen(), NOW, patched=False, created=(), deleted=()) is None
    assert not pacing.waiting_for_watch(None, seen(), NOW)

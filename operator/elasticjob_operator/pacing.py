"""When the periodic timer may skip a job's reconcile: pure decisions on what kopf's indexes show.

Two reasons to skip a tick, both bounded in time:
- **Steady**: the last reconcile did nothing, and nothing it reads has changed since: the
  resourceVersions of the job and of its pods, and the NotReady nodes. It holds until a
  time-based decision of the planner comes due (`Plan.recheck_at`) or `RESYNC` has passed.
- **Expected**: the last reconcile wrote something the watches have not shown yet: a status
  patch (the job's resourceVersion is still the one it read), pods it created (not in the index
  yet) or deleted (still there, not terminating). Planning again on that stale view would create
  the same pods again (409s), post the same events twice and write the same status again. This is
  the "expectations" of Kubernetes' own controllers; it holds at most `PATIENCE`, after which
  the reconcile runs anyway (a lost watch event, a patch kopf gave up on).

Limits: a pod created and deleted again before the index saw it keeps its expectation until
`PATIENCE` runs out; so does a spec change made meanwhile (`kubectl scale` right after a create).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from elasticjob_operator import pods as podinfo

#: a full reconcile of each job at least this often, even when nothing it reads changed
RESYNC = timedelta(seconds=60)
#: how long the timer waits for the watches to show what a reconcile wrote
PATIENCE = timedelta(seconds=15)


@dataclass(frozen=True)
class Seen:
    """What a reconcile of one job reads from kopf's indexes, and its identity."""

    job_version: str | None
    pods: tuple[dict[str, Any], ...]
    nodes: tuple[tuple[str, datetime], ...]  # NotReady nodes and since when
    #: the job's Kueue Workload, when it is queued (queueing.essentials)
    workloads: tuple[dict[str, Any], ...] = ()

    @property
    def key(self) -> tuple[Any, ...]:
        versions = sorted((podinfo.name(p), p["metadata"].get("resourceVersion")) for p in self.pods)
        workloads = tuple(w["metadata"].get("resourceVersion") for w in self.workloads)
        return (self.job_version, tuple(versions), self.nodes, workloads)


def seen(
    body: Mapping[str, Any],
    pods_by_job: Mapping[Any, Iterable[Any]],
    nodes_not_ready: Mapping[str, Iterable[Any]],
    workloads: Iterable[dict[str, Any]] | None = None,
) -> Seen:
    meta = body.get("metadata") or {}
    key = (meta.get("namespace"), meta.get("name"))
    pods = tuple(pods_by_job.get(key, []))
    nodes = tuple(
        sorted((node, since) for node, values in nodes_not_ready.items() if (since := _latest(values)) is not None)
    )
    return Seen(meta.get("resourceVersion"), pods, nodes, tuple(workloads or ()))


def _latest(values: Iterable[Any]) -> Any:
    last = None
    for value in values:
        last = value
    return last


@dataclass(frozen=True)
class Steady:
    """A reconcile found nothing to do with `key` seen; the same holds until `until`."""

    key: tuple[Any, ...]
    until: datetime


def steady(now_seen: Seen, now: datetime, recheck_at: datetime | None) -> Steady:
    until = now + RESYNC
    return Steady(now_seen.key, min(until, recheck_at) if recheck_at else until)


def still_steady(last: Steady | None, now_seen: Seen, now: datetime) -> bool:
    """Whether a reconcile now would only repeat the last one, which did nothing."""
    return last is not None and last.key == now_seen.key and now < last.until


@dataclass(frozen=True)
class Expected:
    """What a reconcile wrote, for the watches to show before the timer plans again."""

    job_version: str | None  # the resourceVersion a status patch was based on; None: no patch
    created: frozenset[str]
    deleted: frozenset[str]
    until: datetime


def expect(
    read: Seen, now: datetime, *, patched: bool, created: Iterable[str], deleted: Iterable[str]
) -> Expected | None:
    written = Expected(read.job_version if patched else None, frozenset(created), frozenset(deleted), now + PATIENCE)
    return written if (patched or written.created or written.deleted) else None


def waiting_for_watch(expected: Expected | None, now_seen: Seen, now: datetime) -> bool:
    """Whether what the last reconcile wrote is still missing from what the watches show."""
    if expected is None or now >= expected.until:
        return False
    if expected.job_version is not None and now_seen.job_version == expected.job_version:
        return True
    pods = {podinfo.name(p): p for p in now_seen.pods}
    if any(name not in pods for name in expected.created):
        return True
    return any(name in pods and not podinfo.terminating(pods[name]) for name in expected.deleted)

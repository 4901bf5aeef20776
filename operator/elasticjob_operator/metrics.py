"""Prometheus metrics of the operator, served on `--metrics-bind-address` with prometheus-client.

Names follow Prometheus' conventions: the `elasticjob_` prefix, `_total` on counters, seconds.
Labels are bounded: `namespace` and `job` appear only on the per-job gauge, whose series go
when the job does; every other label takes values from a fixed set.

Series (docs/metrics.md has the table with their sources):
- from the jobs' watch, the same on every replica: `elasticjob_jobs{phase}`,
  `elasticjob_jobs_created_total` (its initial listing excluded),
  `elasticjob_jobs_finished_total{result,reason}`, `elasticjob_job_world_size{namespace,job}`;
- from reconciles, moving on the leader: `elasticjob_worker_group_restarts_total`,
  `elasticjob_worker_replacements_total{failure_class}` (a FailureClass, `Deleted` or `Disrupted`),
  `elasticjob_store_recreations_total`, `elasticjob_reconcile_duration_seconds` (reconciles that
  ran; paced ticks that return at once are not counted), `elasticjob_reconcile_errors_total`,
  `elasticjob_reconciles_in_flight` (kopf has no work queue: this is the thread pool's depth);
- `elasticjob_apiserver_requests_total{verb,code}`: the operator's own creates and deletes
  (kube.py); kopf's watches and status patches are not among them;
- `elasticjob_leader`: 1 while this replica holds the Lease (or runs without election).

The watch-fed series are the same on every replica; the reconcile-fed ones move on the leader.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

TERMINAL = ("Succeeded", "Failed")
PHASES = ("Pending", "Queued", "Suspended", "WaitingForRendezvous", "Running", "Restarting", *TERMINAL)


class _JobGauges(Collector):
    """`elasticjob_jobs` and `elasticjob_job_world_size`, computed at scrape time from the watch."""

    def __init__(self, jobs: Callable[[], Mapping[tuple[str, str], tuple[str, int | None]]]) -> None:
        self._jobs = jobs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = dict(self._jobs())
        by_phase = GaugeMetricFamily("elasticjob_jobs", "ElasticJobs by status.phase", labels=["phase"])
        counts = dict.fromkeys(PHASES, 0)
        for phase, _ in jobs.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, n in counts.items():
            by_phase.add_metric([phase], n)
        yield by_phase
        world = GaugeMetricFamily(
            "elasticjob_job_world_size", "status.rendezvous.worldSize of each job", labels=["namespace", "job"]
        )
        for (namespace, name), (_, size) in sorted(jobs.items()):
            if size is not None:
                world.add_metric([namespace, name], size)
        yield world


class Metrics:
    """The operator's registry and the calls that move it; safe from any thread."""

    def __init__(self, leading: Callable[[], bool] = lambda: True) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], tuple[str, int | None]] = {}
        r = self.registry
        self.created = Counter("elasticjob_jobs_created", "ElasticJobs added (seen by the watch)", registry=r)
        self.finished = Counter(
            "elasticjob_jobs_finished", "ElasticJobs that turned Succeeded or Failed", ["result", "reason"], registry=r
        )
        self.restarts = Counter("elasticjob_worker_group_restarts", "worker-group restarts decided", registry=r)
        self.replacements = Counter(
            "elasticjob_worker_replacements", "worker pods replaced, by failure class", ["failure_class"], registry=r
        )
        self.store_recreations = Counter(
            "elasticjob_store_recreations", "rendezvous store generations started after a loss", registry=r
        )
        self.hangs = Counter(
            "elasticjob_hangs", "worker hangs the launchers reported (Stalled turning True)", registry=r
        )
        self.reconcile_seconds = Histogram(
            "elasticjob_reconcile_duration_seconds",
            "time of one job's reconcile",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.reconcile_errors = Counter("elasticjob_reconcile_errors", "reconciles that raised", registry=r)
        self.in_flight = Gauge(
            "elasticjob_reconciles_in_flight", "reconciles queued for or running on the thread pool", registry=r
        )
        self.requests = Counter(
            "elasticjob_apiserver_requests", "the operator's apiserver requests", ["verb", "code"], registry=r
        )
        leader = Gauge("elasticjob_leader", "1 while this replica leads", registry=r)
        leader.set_function(lambda: 1.0 if leading() else 0.0)
        r.register(_JobGauges(self._snapshot))

    def _snapshot(self) -> dict[tuple[str, str], tuple[str, int | None]]:
        with self._lock:
            return dict(self._jobs)

    def job_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of an ElasticJob (kopf's raw event type: None while listing)."""
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if kind == "DELETED":
            with self._lock:
                self._jobs.pop(key, None)
            return
        phase = status.get("phase") or "Pending"
        world = (status.get("rendezvous") or {}).get("worldSize")
        with self._lock:
            before = self._jobs.get(key)
            self._jobs[key] = (phase, world)
        if kind == "ADDED" and before is None:
            self.created.inc()
        if phase in TERMINAL and before is not None and before[0] not in TERMINAL:
            self.finished.labels(phase, _reason(status, phase)).inc()

    def decided(self, reason: str, cause: str) -> None:
        """An event a reconcile posted: the ones that are counted."""
        if reason == "WorkerGroupRestarted":
            self.restarts.inc()
        elif reason in ("WorkerLost", "WorkerDisrupted"):
            self.replacements.labels(cause or "Deleted").inc()
        elif reason == "StoreRecreated":
            self.store_recreations.inc()
        elif reason == "Stalled":
            self.hangs.inc()

    def request(self, verb: str, code: int) -> None:
        self.requests.labels(verb, str(code)).inc()

    @contextmanager
    def reconciling(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self.reconcile_errors.inc()
            raise
        finally:
            self.reconcile_seconds.observe(time.perf_counter() - started)


def _reason(status: Mapping[str, Any], phase: str) -> str:
    for cond in status.get("conditions") or []:
        if cond.get("type") == phase:
            return str(cond.get("reason") or "")
    return ""

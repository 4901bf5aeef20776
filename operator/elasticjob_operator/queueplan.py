"""The planner's Kueue steps: what a queued job's Workloads mean for its plan (pure).

`QueueSteps` is a part of the planner (`planner._Planner` inherits it), kept apart so that the
planner stays the job's own logic and this the protocol of queueing.py: `queue_gate` holds a job
back until its base Workload is admitted, `extend` asks for the rest with extension Workloads and
gives back what is no longer needed, `finish_workload` ends them with the job. It reads and writes
only the planner's state: the job, what is observed, the plan.
Limits: those of queueing.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elasticjob_api.models import ElasticJob, ElasticJobStatus, Phase

from elasticjob_operator import naming, queueing
from elasticjob_operator import pods as podinfo
from elasticjob_operator.conditions import set_condition

if TYPE_CHECKING:
    from elasticjob_operator.planner import Observed, Plan

Manifest = dict[str, Any]


@dataclass(frozen=True)
class WorkloadAction:
    """What to do to one of a queued job's Kueue Workloads (queueing.py)."""

    #: the Workload: as built (`create`) or as the index shows it
    workload: Manifest
    #: create it (the handler adds the priority it looks up)
    create: bool = False
    #: a status to write to it (read-modify-write of its conditions, based on the version seen)
    status: dict[str, Any] | None = None
    #: take the finalizer kueue.x-k8s.io/resource-in-use off (after `status`, if both)
    release: bool = False
    #: delete it (the finalizer first): stale counts without quota, or an evicted extension
    delete: bool = False


class QueueSteps:
    """The planner's state these steps use, and the planner's helpers they call."""

    job: ElasticJob
    obs: Observed
    plan: Plan
    previous: ElasticJobStatus
    now: str
    workers: list[Manifest]
    admission: queueing.Admission | None

    # the planner's helpers (planner._Planner's methods)
    _event: Callable[..., None]
    _delete: Callable[[Manifest, int | None, str], None]
    _finish_idle: Callable[[Phase, str, str], None]
    observed_live: Callable[[], list[Manifest]]

    def _act(self, workload: Manifest, **what: Any) -> None:
        self.plan.workloads.append(WorkloadAction(workload, **what))

    def queue_gate(self) -> Plan | None:
        """The plan while Kueue has not admitted the job; None once it has (`self.admission` set)."""
        state = self.obs.queue
        if state is None:
            return None
        base = state.base
        if base is None:
            self._act(queueing.build_workload(self.job), create=True)
            return self.queued("Pending", f"queued in LocalQueue {state.queue}: creating its Workload")
        name = base["metadata"]["name"]
        if queueing.deleting(base):
            if not self.obs.pods and queueing.holds_finalizer(base):
                self._act(base, release=True)
            return self.queued("WorkloadDeleted", f"Workload {name} is being deleted; the job queues again after it")
        evicted = queueing.eviction(base)
        if evicted is not None:
            reason, message = evicted
            if not self.obs.pods:  # every pod is gone: give the quota back, as jobframework does
                self._act(base, status=queueing.cleared_status(base, reason, message, self.now))
                for extension in state.extensions:
                    self._act(extension, release=queueing.holds_finalizer(extension), delete=True)
            if self.previous.phase != Phase.QUEUED:
                self._event("Normal", "Evicted", f"Kueue evicted Workload {name} ({reason}): {message}; "
                            "draining the pods, the job queues again (not counted against backoffLimit)")  # fmt: skip
            return self.queued(
                reason, f"evicted by Kueue ({reason}): {message}; the pods drain and the job queues again"
            )
        self.admission = queueing.admission(state)
        if self.admission is not None:
            self.extend(state, self.admission)
            return None
        if queueing.stale(base, self.job.spec.desired_replicas, self.job.spec.min_replicas) and not self.obs.pods:
            self._act(base, release=True, delete=True)
            return self.queued(
                "Pending", f"queued in LocalQueue {state.queue}: the replicas changed, making the Workload again"
            )
        reason, message = queueing.waiting(base)
        return self.queued(reason, f"queued in LocalQueue {state.queue}: {message}")

    def extend(self, state: queueing.QueueState, adm: queueing.Admission) -> None:
        """Admitted: ask for the workers still wanted with one pending extension; give back the
        extensions no longer needed or evicted once their workers are gone."""
        wanted = self.job.spec.desired_replicas
        workers = [p for p in self.workers if podinfo.label_int(p, naming.LABEL_INDEX) is not None]
        starts = {s.workload: s.start for s in adm.slices}
        pending = False
        for ext in state.extensions:
            if queueing.finished(ext) or queueing.deleting(ext):
                if queueing.holds_finalizer(ext):
                    self._act(ext, release=True)
                continue
            name = ext["metadata"]["name"]
            if name in starts:  # admitted: finished once scaled below its first worker and they are gone
                start = starts[name]
                if start >= wanted and not any(
                    (podinfo.label_int(p, naming.LABEL_INDEX) or 0) >= start for p in workers
                ):
                    status = queueing.finished_status(ext, True, "the job was scaled down below its workers", self.now)
                    self._act(ext, status=status, release=True)
                continue
            if queueing.eviction(ext) is not None:
                if len(workers) <= adm.workers:  # its workers are gone (capped by `desired`, drained)
                    self._act(ext, release=True, delete=True)
                pending = True  # it holds quota until it is gone: made again after that
                continue
            if queueing.stale(ext, wanted - adm.workers, 1):
                self._act(ext, release=True, delete=True)
                continue
            pending = True
        if wanted > adm.workers and not pending and not any(a.delete for a in self.plan.workloads):
            number = max((queueing.extension_number(e) for e in state.extensions), default=0) + 1
            self._act(queueing.build_extension(self.job, number, wanted - adm.workers), create=True)

    def suspended_queue(self) -> None:
        """A suspended queued job gives its quota back: once its pods are gone its Workloads are
        deleted, and it queues afresh when resumed. (Kueue's own jobs are stopped through the
        Workload's `spec.active: false`; `spec.suspend` is this job's switch, so it is honoured.)"""
        state = self.obs.queue
        if state is None:
            return
        if not self.obs.pods:
            for workload in state.workloads:
                gone = queueing.deleting(workload)
                if not gone or queueing.holds_finalizer(workload):
                    self._act(workload, release=queueing.holds_finalizer(workload), delete=not gone)
        message = "spec.suspend is true: its Workloads are deleted once the pods are gone, giving the quota back"
        status = self.plan.status
        status["conditions"] = set_condition(
            status["conditions"],
            {"type": queueing.ADMITTED, "status": "False", "reason": "Suspended", "message": message},
            self.now,
        )

    def queued(self, reason: str, message: str) -> Plan:
        """No pods until admitted: the live ones drain; the time queued is not run time."""
        for pod in self.observed_live():
            self._delete(pod, None, "not admitted by Kueue")
        if self.previous.phase != Phase.QUEUED:
            self._event("Normal", "Queued", message)
        self._finish_idle(Phase.QUEUED, reason, message)
        status = self.plan.status
        status["startTime"] = None  # reset on admission, as Job and TrainJob do on resume
        status["conditions"] = set_condition(
            status["conditions"],
            {"type": queueing.ADMITTED, "status": "False", "reason": reason, "message": message},
            self.now,
        )
        return self.plan

    def admitted_condition(self) -> None:
        adm = self.admission
        if adm is None:
            return
        flavors = ", ".join(adm.flavors) or "none"
        wanted = self.job.spec.desired_replicas
        message = f"admitted by ClusterQueue {adm.cluster_queue}: {min(adm.workers, wanted)} of {wanted} workers"
        if adm.workers > wanted:  # scaled down: the extensions' quota goes back once their workers are gone
            message += f" ({adm.workers - wanted} more admitted, given back once drained)"
        message += f" (flavors: {flavors})"
        status = self.plan.status
        status["conditions"] = set_condition(
            status["conditions"],
            {"type": queueing.ADMITTED, "status": "True", "reason": "Admitted", "message": message},
            self.now,
        )
        if self.previous.phase == Phase.QUEUED or not any(
            c.type == queueing.ADMITTED and c.status == "True" for c in self.previous.conditions
        ):
            self._event("Normal", "Admitted", message)

    def finish_workload(self) -> None:
        """A finished job's Workloads: Finished (Kueue releases the quota), then no finalizer."""
        state = self.obs.queue
        if state is None:
            return
        conditions = self.plan.status.get("conditions") or [
            c.model_dump(by_alias=True) for c in self.previous.conditions
        ]
        message = next((c.get("message", "") for c in conditions if c["type"] == self.previous.phase), "")
        for workload in state.workloads:
            status = None
            if not queueing.finished(workload) and not queueing.deleting(workload):
                succeeded = self.previous.phase == Phase.SUCCEEDED
                status = queueing.finished_status(workload, succeeded, message or "the job finished", self.now)
            if status is not None or queueing.holds_finalizer(workload):
                self._act(workload, status=status, release=queueing.holds_finalizer(workload))

"""Decide, from a job and what is observed of its pods and nodes, what to do and what status to write.

`plan(job, observed, settings) -> Plan` is pure: no API calls, no clock (the time comes in
`Observed.now`). Running it twice on the same input gives the same plan, and running it on what
the previous plan produced converges, which makes the handlers idempotent: after an operator
restart everything is derived again from the pods (store generation from pod labels, worker
indices from pod names).

Limits: worker pods are numbered `0..replicas-1`; scale-down removes the highest indices; a
pod's name is reused only after the old pod object is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from elasticjob_api.models import (
    TERMINAL_PHASES,
    CleanPodPolicy,
    ElasticJob,
    FailureAction,
    FailureClass,
    Phase,
)
from elasticjob_api.times import format_time, parse_time

from elasticjob_operator import builders, hangs, naming, queueing
from elasticjob_operator import pods as podinfo
from elasticjob_operator.conditions import set_condition, set_phase_conditions
from elasticjob_operator.failures import Failure, classify_pod, disruption
from elasticjob_operator.queueplan import QueueSteps, WorkloadAction

__all__ = ["Deletion", "Event", "Observed", "Plan", "PlannerSettings", "WorkloadAction", "plan"]

Manifest = dict[str, Any]


@dataclass(frozen=True)
class PlannerSettings:
    #: how long a pod's node may be NotReady before the pod is force-deleted and replaced
    node_lost_grace: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class Observed:
    pods: list[Manifest]
    #: node name -> when it was last seen turning NotReady/Unknown (absent: Ready or unknown to us)
    nodes_not_ready_since: dict[str, datetime]
    now: datetime
    #: worker pods of this job that are gone and carried DisruptionTarget when last seen: name ->
    #: the condition's reason (the pod watch remembers them; a pod can vanish between two reconciles)
    gone_disrupted: dict[str, str] = field(default_factory=dict)
    #: the job's Workload and the ResourceFlavors, when the job is queued (label kueue.x-k8s.io/queue-name)
    queue: queueing.QueueState | None = None


@dataclass(frozen=True)
class Deletion:
    name: str
    #: None: the pod's own grace period (drain); 0: force (finished pods, lost nodes)
    grace_seconds: int | None
    reason: str


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str
    #: names of objects this event announces creating; posted only if one of them was created
    creates: tuple[str, ...] = ()
    #: for a replaced worker: its failure class, `Deleted` or `Disrupted` (the metrics' label)
    cause: str = ""


@dataclass
class Plan:
    create: list[Manifest] = field(default_factory=list)
    delete: list[Deletion] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    delete_job: bool = False
    workloads: list[WorkloadAction] = field(default_factory=list)
    #: the earliest later time at which the same observation could give another plan (a node's
    #: lost-grace, activeDeadlineSeconds or the TTL running out); None: only a change can
    recheck_at: datetime | None = None

    @property
    def acts(self) -> bool:
        """Whether carrying the plan out does anything besides writing status."""
        return bool(self.create or self.delete or self.events or self.delete_job or self.workloads)


@dataclass(frozen=True)
class _Counts:
    replicas: int
    ready: int
    indices: list[int]


@dataclass
class _Workers:
    healthy: dict[int, Manifest] = field(default_factory=dict)
    succeeded: list[Manifest] = field(default_factory=list)
    terminating: set[str] = field(default_factory=set)
    failures: dict[int, Failure] = field(default_factory=dict)
    #: lost indices not counted against backoffLimit: disrupted (DisruptionTarget) or a rule's Ignore
    uncounted: dict[int, str] = field(default_factory=dict)


class _Planner(QueueSteps):
    def __init__(self, job: ElasticJob, observed: Observed, settings: PlannerSettings) -> None:
        self.job = job
        self.obs = observed
        self.settings = settings
        self.now = format_time(observed.now)
        self.plan = Plan()
        self.previous = job.status
        self.workers = [p for p in observed.pods if podinfo.role(p) == naming.ROLE_WORKER]
        self.stores = [p for p in observed.pods if podinfo.role(p) == naming.ROLE_STORE]
        self.failure: tuple[str, str] | None = None  # (reason, message)
        self.restarting = False
        self.admission: queueing.Admission | None = None
        self.hang: hangs.Assessment | None = None

    @property
    def desired(self) -> int:
        """The workers wanted now: the spec's replicas, capped by what Kueue admitted."""
        wanted = self.job.spec.desired_replicas
        return wanted if self.admission is None else min(wanted, self.admission.workers)

    def _placed(self, pod: Manifest, index: int | None) -> Manifest:
        """The pod with its admitted flavors' placement (worker `index`, or the store: None)."""
        if self.admission is None:
            return pod
        placement = self.admission.store if index is None else self.admission.placement(index)
        return placement.apply(pod) if placement else pod

    # --- helpers --------------------------------------------------------------------------

    def _due(self, at: datetime) -> bool:
        """Whether `at` has come; if not, remember it as a time to plan again."""
        if self.obs.now >= at:
            return True
        if self.plan.recheck_at is None or at < self.plan.recheck_at:
            self.plan.recheck_at = at
        return False

    def _node_lost(self, pod: Manifest) -> bool:
        node = podinfo.node_name(pod)
        since = self.obs.nodes_not_ready_since.get(node) if node else None
        return since is not None and self._due(since + self.settings.node_lost_grace)

    def _delete(self, pod: Manifest, grace: int | None, reason: str) -> None:
        name = podinfo.name(pod)
        if all(d.name != name for d in self.plan.delete):
            self.plan.delete.append(Deletion(name, grace, reason))

    def _event(self, type_: str, reason: str, message: str, creates: tuple[str, ...] = (), cause: str = "") -> None:
        self.plan.events.append(Event(type_, reason, message, creates, cause))

    def _fail(self, reason: str, message: str) -> None:
        if self.failure is None:
            self.failure = (reason, message)

    # --- steps ----------------------------------------------------------------------------

    def sort_workers(self) -> _Workers:
        out = _Workers()
        for pod in self.workers:
            index = podinfo.label_int(pod, naming.LABEL_INDEX)
            lost = self._node_lost(pod)
            if podinfo.terminating(pod):
                out.terminating.add(podinfo.name(pod))
                disrupted = disruption(pod)
                if disrupted and index is not None:  # preempted or evicted: going, not failed
                    out.uncounted[index] = f"disrupted ({disrupted})"
                if lost:  # stuck Terminating on a NotReady node: the kubelet will never confirm
                    self._delete(pod, 0, "node lost")
                continue
            phase = podinfo.phase(pod)
            if phase == "Succeeded":
                out.succeeded.append(pod)
                continue
            if index is None:
                continue
            if phase == "Failed" or lost:
                self._failed(pod, index, lost and phase != "Failed", out)
                continue
            out.healthy[index] = pod
        return out

    def _failed(self, pod: Manifest, index: int, node_lost: bool, out: _Workers) -> None:
        report = self.previous.restarts.workers.get(podinfo.name(pod))
        reported = report.last_failure.exit_code if report and report.last_failure else None
        failure = classify_pod(pod, node_lost=node_lost, reported_exit_code=reported)
        out.failures[index] = failure
        if failure.disruption:
            action = FailureAction.IGNORE
            out.uncounted[index] = f"disrupted ({failure.disruption})"
        else:
            action = self.job.spec.failure_policy.action_for(failure.failure_class, failure.rule_exit_code)
        if action == FailureAction.FAIL:
            code = f"exit code {failure.exit_code}"
            if failure.rule_exit_code != failure.exit_code:
                code += f", the script's {failure.rule_exit_code}"
            self._fail(
                failure.failure_class.value,
                f"worker pod {podinfo.name(pod)} failed ({failure.failure_class.value}, {code}): {failure.message}",
            )
            return
        if action == FailureAction.IGNORE and index not in out.uncounted:
            out.uncounted[index] = "ignored by failurePolicy.rules"
        self._delete(pod, 0, f"replace after {failure.failure_class.value}")
        out.terminating.add(podinfo.name(pod))

    def count_losses(self, w: _Workers) -> int:
        desired = self.desired
        lost = sorted(i for i in self.previous.worker_indices if i < desired and i not in w.healthy)
        if w.succeeded:
            return self.previous.replacements
        counted = 0
        for i in lost:
            failure = w.failures.get(i)
            why = (
                f"{failure.failure_class.value}: {failure.message}" if failure else "the pod was deleted or disappeared"
            )
            name = f"{self.job.name}-worker-{i}"
            if name in self.obs.gone_disrupted and i not in w.uncounted and failure is None:
                w.uncounted[i] = f"disrupted ({self.obs.gone_disrupted[name]})"
            cause = failure.failure_class.value if failure else "Deleted"
            if i in w.uncounted and failure is None:
                self._event("Normal", "WorkerDisrupted", f"worker {name} {w.uncounted[i]}; it will be replaced, "
                            "not counted against backoffLimit", cause="Disrupted")  # fmt: skip
                continue
            if i in w.uncounted:
                self._event("Warning", "WorkerLost", f"worker {name} lost ({why}); replacing it, {w.uncounted[i]}: "
                            "not counted against backoffLimit", cause=cause)  # fmt: skip
                continue
            counted += 1
            self._event("Warning", "WorkerLost", f"worker {name} lost ({why}); replacing it", cause=cause)
        replacements = self.previous.replacements + counted
        limit = self.job.spec.failure_policy.backoff_limit
        if replacements > limit:
            self._fail("BackoffLimitExceeded", f"{replacements} worker pods replaced, backoffLimit is {limit}")
        return replacements

    def restarts(self) -> int:
        reports = self.previous.restarts.workers
        total = max((r.restarts for r in reports.values()), default=0)
        if total > self.previous.restarts.total:
            self.restarting = True
            latest = max(
                (r for r in reports.values() if r.last_failure is not None),
                key=lambda r: (r.last_failure.time or "") if r.last_failure else "",
                default=None,
            )
            detail = ""
            if latest is not None and latest.last_failure is not None:
                lf = latest.last_failure
                detail = f": rank {lf.global_rank} exited with {lf.exit_code} ({lf.failure_class})"
            self._event("Warning", "WorkerGroupRestarted", f"worker group restart {total}{detail}")
        if total > self.job.spec.max_restarts:
            self._fail(
                "MaxRestartsExceeded",
                f"{total} worker-group restarts, maxRestarts is {self.job.spec.max_restarts}",
            )
        return total

    def stalls(self) -> None:
        """A launcher's Hang report: the `Stalled` condition (hangs.py), an Event, the failure policy."""
        self.hang = hang = hangs.assess(self.previous)
        if hang is None or not hang.new:
            return
        message = hang.condition["message"]
        self._event("Warning", "Stalled", message, cause=FailureClass.HANG.value)
        if self.job.spec.failure_policy.action_for(FailureClass.HANG) == FailureAction.FAIL:
            self._fail(FailureClass.HANG.value, f"a worker hung and failurePolicy.rules say Fail: {message}")

    def store(self) -> tuple[int, Manifest | None]:
        """Keep one live store pod of the current generation; a lost store gets generation + 1.

        Returns the generation for the status: that of the store pod seen, else the one the status
        had. A store just created is not in the watch-fed index yet (seconds later on a busy
        apiserver); had the status claimed its generation at once, the next reconcile would take
        the unseen store for a lost one and start another generation.
        """
        labelled = [podinfo.label_int(p, naming.LABEL_GENERATION) or 0 for p in self.stores]
        generation = max([self.previous.rendezvous.store_generation, *labelled])
        current = next(
            (
                p
                for p in self.stores
                if podinfo.label_int(p, naming.LABEL_GENERATION) == generation and not podinfo.terminating(p)
            ),
            None,
        )
        if current is not None and (podinfo.phase(current) in ("Failed", "Succeeded") or self._node_lost(current)):
            self._delete(current, 0, "store lost")
            current = None
        if current is None:
            if generation > 0:
                self._event(
                    "Warning",
                    "StoreRecreated",
                    f"rendezvous store generation {generation} was lost; starting generation {generation + 1}",
                    (naming.store_pod_name(self.job, generation + 1),),
                )
            generation += 1
            self.plan.create.append(self._placed(builders.build_store_pod(self.job, generation), None))
        for pod in self.stores:
            gen = podinfo.label_int(pod, naming.LABEL_GENERATION) or 0
            if gen < generation and not podinfo.terminating(pod):
                self._delete(pod, 0, "old store generation")
            elif podinfo.terminating(pod) and self._node_lost(pod):
                self._delete(pod, 0, "node lost")
        return (generation if current is not None else self.previous.rendezvous.store_generation), current

    def scale(self, w: _Workers) -> None:
        desired = self.desired
        leaving = sorted((i for i in w.healthy if i >= desired), reverse=True)
        if leaving:
            names = [naming.worker_pod_name(self.job, i) for i in leaving]
            for i in leaving:
                self._delete(w.healthy.pop(i), None, "scale down")
            self._event("Normal", "ScalingDown", f"draining {', '.join(names)} (replicas {desired})")
        new: list[str] = []
        replaced: list[str] = []
        for i in range(desired):
            name = naming.worker_pod_name(self.job, i)
            if i in w.healthy or name in w.terminating:
                continue
            self.plan.create.append(self._placed(builders.build_worker_pod(self.job, i), i))
            (replaced if i in self.previous.worker_indices or i in w.failures else new).append(name)
        if new:
            self._event("Normal", "ScalingUp", f"creating {', '.join(new)} (replicas {desired})", tuple(new))
        if replaced:
            self._event(
                "Normal", "ReplacingWorker", f"creating {', '.join(replaced)} in place of lost pods", tuple(replaced)
            )

    def rendezvous(self, generation: int, w: _Workers) -> dict[str, Any]:
        members = {podinfo.name(p) for p in [*w.healthy.values(), *w.succeeded]}
        reports = {
            name: r for name, r in self.previous.restarts.workers.items() if name in members and r.round is not None
        }
        latest = max((r.round for r in reports.values() if r.round is not None), default=None)
        current = {n: r for n, r in reports.items() if r.round == latest}
        world = max((r.world_size or 0 for r in current.values()), default=None)
        return {
            "endpoint": naming.store_endpoint(self.job),
            "round": latest,
            "worldSize": world,
            "joinedNodes": sorted(current),
            "storeGeneration": generation,
        }

    def waiting_message(self, store: Manifest | None, w: _Workers) -> str:
        missing = []
        if store is None or not podinfo.is_ready(store):
            missing.append(f"store: {podinfo.waiting_reason(store) if store else 'being created'}")
        for i in range(self.desired):
            pod = w.healthy.get(i)
            if pod is None:
                missing.append(f"{naming.worker_pod_name(self.job, i)}: not created yet")
            elif not podinfo.is_ready(pod):
                missing.append(f"{podinfo.name(pod)}: {podinfo.waiting_reason(pod)}")
        return "waiting for " + "; ".join(missing) if missing else "waiting for the rendezvous"

    # --- the whole decision --------------------------------------------------------------

    def terminal(self) -> Plan:
        self.finish_workload()
        policy = self.job.spec.clean_pod_policy
        for pod in self.observed_live():
            if policy == CleanPodPolicy.ALL or (
                policy == CleanPodPolicy.RUNNING and podinfo.phase(pod) not in ("Succeeded", "Failed")
            ):
                self._delete(pod, None, f"job finished, cleanPodPolicy {policy.value}")
        ttl = self.job.spec.ttl_seconds_after_finished
        done = self.previous.completion_time
        if ttl is not None and done is not None and self._due(parse_time(done) + timedelta(seconds=ttl)):
            self.plan.delete_job = True
        self.plan.status = {
            "observedGeneration": self.job.metadata.get("generation"),
            # kept as stated at the finish (the final round's pods), whatever cleanPodPolicy removes
            "replicas": self.previous.replicas,
            "readyReplicas": sum(1 for p in self.workers if podinfo.is_ready(p)),
        }
        return self.plan

    def observed_live(self) -> list[Manifest]:
        return [p for p in self.obs.pods if not podinfo.terminating(p)]

    def suspended(self) -> Plan:
        for pod in self.observed_live():
            self._delete(pod, None, "job suspended")
        if self.previous.phase != Phase.SUSPENDED:
            self._event("Normal", "Suspended", "job suspended: its pods are deleted")
        self._finish(Phase.SUSPENDED, "Suspended", "spec.suspend is true", _Counts(0, 0, []))
        self.suspended_queue()
        return self.plan

    def _finish_idle(self, phase: Phase, reason: str, message: str) -> None:
        """`_finish` for a job with no pods (suspended, queued)."""
        self._finish(phase, reason, message, _Counts(0, 0, []))

    def _finish(self, phase: Phase, reason: str, message: str, counts: _Counts) -> None:
        status = self.plan.status
        status.update(
            phase=phase.value,
            conditions=set_phase_conditions(
                [c.model_dump(by_alias=True, exclude_none=True) for c in self.previous.conditions],
                phase,
                reason,
                message,
                self.now,
            ),
            observedGeneration=self.job.metadata.get("generation"),
            replicas=counts.replicas,
            readyReplicas=counts.ready,
            selector=naming.worker_selector(self.job),
            workerIndices=counts.indices,
            startTime=self.previous.start_time or self.now,
        )
        if phase in TERMINAL_PHASES:
            status["completionTime"] = self.now
        if phase != self.previous.phase and phase in TERMINAL_PHASES | {Phase.RUNNING}:
            self._event("Warning" if phase == Phase.FAILED else "Normal", phase.value, message)
        self.admitted_condition()
        if self.hang is not None:
            status["conditions"] = set_condition(status["conditions"], self.hang.condition, self.now)

    def run(self) -> Plan:
        if self.previous.phase in TERMINAL_PHASES:
            return self.terminal()
        if self.job.spec.suspend:
            return self.suspended()
        gate = self.queue_gate()
        if gate is not None:
            return gate
        deadline = self.job.spec.active_deadline_seconds
        start = self.previous.start_time
        if deadline is not None and start is not None and self._due(parse_time(start) + timedelta(seconds=deadline)):
            self._fail("DeadlineExceeded", f"the job ran longer than activeDeadlineSeconds ({deadline})")
        w = self.sort_workers()
        replacements = self.count_losses(w)
        total = self.restarts()
        self.stalls()
        generation, store = self.store()
        succeeded = bool(w.succeeded) and not any(podinfo.phase(p) == "Running" for p in w.healthy.values())
        if self.failure is None and not succeeded and not w.succeeded:
            self.scale(w)
        ready = sum(1 for p in w.healthy.values() if podinfo.is_ready(p))
        self.plan.status.update(
            replacements=replacements,
            restarts={"total": total},
            rendezvous=self.rendezvous(generation, w),
        )
        count = _Counts(replicas=len(w.healthy), ready=ready, indices=sorted(w.healthy))
        desired = self.desired
        if self.failure is not None:
            reason, message = self.failure
            self._finish(Phase.FAILED, reason, message, count)
            self.plan.create.clear()
            return self.terminal_cleanup()
        if succeeded:
            names = ", ".join(podinfo.name(p) for p in w.succeeded)
            # REPLICAS of a finished job: the final round's worker pods (they succeeded, none runs)
            final = _Counts(replicas=len(w.healthy) + len(w.succeeded), ready=ready, indices=sorted(w.healthy))
            self._finish(
                Phase.SUCCEEDED,
                "AllWorkersSucceeded",
                f"workers of the final round succeeded: {names}",
                final,
            )
            self.plan.create.clear()
            return self.terminal_cleanup()
        if not self.observed_live():
            self._finish(Phase.CREATED, "Created", "creating the store and worker pods", count)
        elif store is None or not podinfo.is_ready(store) or ready < self.job.spec.min_replicas:
            self._finish(Phase.WAITING, "WaitingForPods", self.waiting_message(store, w), count)
        elif (
            len(w.healthy) != desired
            or any(d.reason == "scale down" for d in self.plan.delete)
            or any(podinfo.terminating(p) for p in self.workers)
        ):
            self._finish(Phase.SCALING, "Scaling", f"{len(w.healthy)} of {desired} workers", count)
        elif self.restarting:
            self._finish(Phase.RESTARTING, "WorkerGroupRestarted", f"worker-group restart {total}", count)
        else:
            message = f"{ready} workers running"
            if ready < desired:  # started with what fits; say what the others wait for
                message = f"{ready} of {desired} workers running; {self.waiting_message(store, w)}"
            self._finish(Phase.RUNNING, "Running", message, count)
        return self.plan

    def terminal_cleanup(self) -> Plan:
        """Apply cleanPodPolicy right away on the transition to a terminal phase."""
        self.previous = self.previous.model_copy(update={"phase": Phase(self.plan.status["phase"])})
        status = self.plan.status
        cleanup = self.terminal()
        cleanup.status = status
        return cleanup


def plan(job: ElasticJob, observed: Observed, settings: PlannerSettings | None = None) -> Plan:
    """What to create, delete and report for `job`, given what is observed."""
    return _Planner(job, observed, settings or PlannerSettings()).run()

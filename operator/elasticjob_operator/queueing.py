"""Kueue for ElasticJob: the job's Workload, and what Kueue's answer to it means (pure).

An ElasticJob labelled `kueue.x-k8s.io/queue-name` waits for Kueue. Kueue runs no controller for
an external framework (`integrations.externalFrameworks`), so the operator replays the part of
Kueue's jobframework an integration owns (docs/research/kueue-v0.17.md, section 4):

1. The job gets one `kueue.x-k8s.io/v1beta2` Workload it owns (controller reference, finalizer
   `kueue.x-k8s.io/resource-in-use`), with two PodSets: `workers` (count = replicas, minCount =
   minReplicas: partial admission) and `store` (count 1). Their templates are the pods the
   builders make, so Kueue counts the requests that will really run.
2. Until the Workload is `Admitted`, the job has no pods: phase Queued, and a condition
   `Admitted` False with Kueue's own reason and message (quota, a missing LocalQueue).
3. Admitted: the `workers` assignment's count caps the world (`Admission.workers`); the assigned
   flavors' node labels and tolerations, and the label `kueue.x-k8s.io/podset`, go into the pods.
4. Evicted (preempted, the ClusterQueue stopped or shrunk, the Workload deactivated): the pods are
   drained as on a scale-down, nothing counts against backoffLimit, and once no pod is left the
   admission is cleared in one status write (`cleared_status`), as jobframework does, so that
   Kueue can requeue the Workload and the preemptor's quota frees.
5. The job finished: the Workload is marked `Finished` (Kueue releases the quota), then loses
   its finalizer.

Limits: the Workload's PodSets are written once; a job scaled beyond the admitted count runs at
the admitted count (Kueue's workload slices are Alpha and cover only its built-in jobs). A
Workload not yet reserved whose counts no longer match the spec is deleted and made again.
TAS flavors (`topologyName`) and AdmissionCheck podSetUpdates are not applied.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from elasticjob_api.models import ElasticJob

from elasticjob_operator import builders, naming

Manifest = dict[str, Any]

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
PODSET_LABEL = "kueue.x-k8s.io/podset"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
FINALIZER = "kueue.x-k8s.io/resource-in-use"
PODSET_WORKERS = "workers"
PODSET_STORE = "store"
#: eviction reasons after which Kueue requeues at once (jobframework's Requeued=True)
REQUEUE_AT_ONCE = frozenset({"Preempted", "NodeFailures"})
#: the job condition that says whether, and by which ClusterQueue, the job is admitted
ADMITTED = "Admitted"


def queue_name(job: ElasticJob) -> str | None:
    labels = job.metadata.get("labels") or {}
    value = labels.get(QUEUE_LABEL)
    return str(value) if value else None


def workload_name(job: ElasticJob) -> str:
    """Kueue's naming convention for a job's Workload: `elasticjob-<job>-<5 hex of kind, group, name, uid>`."""
    digest = hashlib.sha1(f"ElasticJob\nelasticjob.io\n{job.name}\n{job.uid}".encode(), usedforsecurity=False)
    return f"elasticjob-{job.name}"[:247] + "-" + digest.hexdigest()[:5]


@dataclass(frozen=True)
class Priority:
    """The Workload's priority: a WorkloadPriorityClass (label) or the pods' PriorityClass, with its value."""

    kind: str  # WorkloadPriorityClass | PriorityClass
    name: str
    value: int

    @property
    def group(self) -> str:
        return GROUP if self.kind == "WorkloadPriorityClass" else "scheduling.k8s.io"


def _template(pod: Manifest, drop_labels: tuple[str, ...]) -> Manifest:
    meta = pod["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in drop_labels}
    template: Manifest = {"metadata": {"labels": labels}, "spec": copy.deepcopy(pod["spec"])}
    if meta.get("annotations"):
        template["metadata"]["annotations"] = dict(meta["annotations"])
    return template


def build_workload(job: ElasticJob, priority: Priority | None = None) -> Manifest:
    """The job's Workload: PodSets `workers` (count replicas, minCount minReplicas) and `store`."""
    workers = builders.build_worker_pod(job, 0)
    store = builders.build_store_pod(job, 1)
    worker_set: Manifest = {
        "name": PODSET_WORKERS,
        "count": job.spec.desired_replicas,
        "template": _template(workers, (naming.LABEL_INDEX,)),
    }
    if job.spec.min_replicas < job.spec.desired_replicas:
        worker_set["minCount"] = job.spec.min_replicas
    spec: Manifest = {
        "queueName": queue_name(job),
        "active": True,
        "podSets": [
            worker_set,
            {"name": PODSET_STORE, "count": 1, "template": _template(store, (naming.LABEL_GENERATION,))},
        ],
    }
    if priority is not None:
        spec["priorityClassRef"] = {"group": priority.group, "kind": priority.kind, "name": priority.name}
        spec["priority"] = priority.value
    labels = naming.job_labels(job)
    if job.uid:
        labels[JOB_UID_LABEL] = job.uid
    return {
        "apiVersion": API_VERSION,
        "kind": "Workload",
        "metadata": {
            "name": workload_name(job),
            "namespace": job.namespace,
            "labels": labels,
            "finalizers": [FINALIZER],
            "ownerReferences": [naming.owner_reference(job)],
        },
        "spec": spec,
    }


# --- reading Kueue's answer -----------------------------------------------------------------


def _condition(workload: Manifest, ctype: str) -> Manifest | None:
    for cond in (workload.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def _true(workload: Manifest, ctype: str) -> bool:
    cond = _condition(workload, ctype)
    return cond is not None and cond.get("status") == "True"


@dataclass(frozen=True)
class Placement:
    """What a PodSet's assigned flavors add to its pods."""

    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Manifest, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def apply(self, pod: Manifest) -> Manifest:
        """A copy of `pod` with the flavors' node labels, tolerations and the podset label."""
        out = copy.deepcopy(pod)
        out["metadata"]["labels"] = {**out["metadata"].get("labels", {}), **self.labels}
        spec = out["spec"]
        if self.node_selector:
            spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **self.node_selector}
        if self.tolerations:
            spec["tolerations"] = [*(spec.get("tolerations") or []), *map(copy.deepcopy, self.tolerations)]
        return out


@dataclass(frozen=True)
class Admission:
    cluster_queue: str
    #: worker pods admitted (between minReplicas and the PodSet's count)
    workers: int
    placements: dict[str, Placement]
    flavors: tuple[str, ...]


@dataclass(frozen=True)
class QueueState:
    """What a reconcile knows of a queued job's Workload: `workload` None when none is seen."""

    queue: str
    workload: Manifest | None = None
    #: ResourceFlavor name -> its spec (nodeLabels, tolerations)
    flavors: dict[str, Manifest] = field(default_factory=dict)


def _placement(assignment: Manifest, flavors: dict[str, Manifest]) -> tuple[Placement, tuple[str, ...]]:
    names = tuple(sorted(set((assignment.get("flavors") or {}).values())))
    selector: dict[str, str] = {}
    tolerations: list[Manifest] = []
    for name in names:
        spec = flavors.get(name) or {}
        selector.update(spec.get("nodeLabels") or {})
        tolerations.extend(spec.get("tolerations") or [])
    labels = {PODSET_LABEL: str(assignment.get("name"))}
    return Placement(selector, tuple(tolerations), labels), names


def admission(workload: Manifest, flavors: dict[str, Manifest], default_workers: int) -> Admission | None:
    """The Workload's admission, if it is Admitted and not being evicted; `default_workers` is
    the count when Kueue's assignment has none (it then admitted the whole PodSet)."""
    if not _true(workload, "Admitted") or _true(workload, "Evicted"):
        return None
    adm = (workload.get("status") or {}).get("admission") or {}
    placements: dict[str, Placement] = {}
    used: set[str] = set()
    counts: dict[str, int] = {}
    for assignment in adm.get("podSetAssignments") or []:
        name = str(assignment.get("name"))
        placements[name], names = _placement(assignment, flavors)
        used.update(names)
        if assignment.get("count") is not None:
            counts[name] = int(assignment["count"])
    spec_count = next(
        (
            int(p.get("count", 1))
            for p in (workload.get("spec") or {}).get("podSets") or []
            if p.get("name") == PODSET_WORKERS
        ),
        default_workers,
    )
    return Admission(
        cluster_queue=str(adm.get("clusterQueue", "")),
        workers=counts.get(PODSET_WORKERS, spec_count),
        placements=placements,
        flavors=tuple(sorted(used)),
    )


def eviction(workload: Manifest) -> tuple[str, str] | None:
    """(reason, message) while Kueue evicts the Workload, and its admission is not yet cleared."""
    cond = _condition(workload, "Evicted")
    if cond is None or cond.get("status") != "True" or not _true(workload, "QuotaReserved"):
        return None
    return str(cond.get("reason") or "Evicted"), str(cond.get("message") or "")


def waiting(workload: Manifest) -> tuple[str, str]:
    """Why the Workload is not admitted yet, in Kueue's words (reason, message)."""
    if _true(workload, "Finished"):
        done = _condition(workload, "Finished") or {}
        return "WorkloadFinished", f"Kueue finished the Workload: {done.get('message') or done.get('reason')}"
    if _true(workload, "QuotaReserved"):
        return "QuotaReserved", "quota is reserved; waiting for the admission checks"
    cond = _condition(workload, "QuotaReserved")
    if cond is not None and cond.get("message"):
        return str(cond.get("reason") or "Pending"), str(cond["message"])
    return "Pending", "waiting for Kueue to consider the Workload"


def stale(workload: Manifest, job: ElasticJob) -> bool:
    """Whether a Workload without a reservation asks for other counts than the spec does (it is
    then made again: Kueue's rule is that PodSets never change while quota is reserved)."""
    if _true(workload, "QuotaReserved"):
        return False
    sets = {p.get("name"): p for p in (workload.get("spec") or {}).get("podSets") or []}
    workers = sets.get(PODSET_WORKERS) or {}
    want_min = job.spec.min_replicas if job.spec.min_replicas < job.spec.desired_replicas else None
    return int(workers.get("count", 1)) != job.spec.desired_replicas or workers.get("minCount") != want_min


def finished(workload: Manifest) -> bool:
    return _true(workload, "Finished")


def deleting(workload: Manifest) -> bool:
    return bool(workload.get("metadata", {}).get("deletionTimestamp"))


def holds_finalizer(workload: Manifest) -> bool:
    return FINALIZER in (workload.get("metadata", {}).get("finalizers") or [])


def _set(conditions: list[Manifest], cond: Manifest, generation: Any, now: str) -> None:
    current = next((c for c in conditions if c.get("type") == cond["type"]), None)
    if current is None:
        current = {"type": cond["type"]}
        conditions.append(current)
    if current.get("status") != cond["status"] or "lastTransitionTime" not in current:
        current["lastTransitionTime"] = now
    current.update(cond)
    if generation is not None:
        current["observedGeneration"] = generation


def cleared_status(workload: Manifest, reason: str, message: str, now: str) -> Manifest:
    """The status write that ends an eviction once the pods are gone (jobframework's
    UnsetQuotaReservationWithCondition): no reservation, not admitted, requeued as Kueue would."""
    conditions = [dict(c) for c in (workload.get("status") or {}).get("conditions") or []]
    generation = workload.get("metadata", {}).get("generation")
    _set(
        conditions,
        {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": message},
        generation,
        now,
    )
    _set(
        conditions,
        {
            "type": "Admitted",
            "status": "False",
            "reason": "NoReservation",
            "message": "The workload has no reservation",
        },
        generation,
        now,
    )
    requeued = "True" if reason in REQUEUE_AT_ONCE else "False"
    _set(conditions, {"type": "Requeued", "status": requeued, "reason": reason, "message": message}, generation, now)
    return {"conditions": conditions, "admission": None}


def finished_status(workload: Manifest, succeeded: bool, message: str, now: str) -> Manifest:
    """Finished=True, as jobframework writes it when the job ends; Kueue then releases the quota."""
    conditions = [dict(c) for c in (workload.get("status") or {}).get("conditions") or []]
    reason = "Succeeded" if succeeded else "Failed"
    _set(conditions, {"type": "Finished", "status": "True", "reason": reason, "message": message[:1000]},
         workload.get("metadata", {}).get("generation"), now)  # fmt: skip
    return {"conditions": conditions}


def essentials(workload: Manifest) -> Manifest:
    """What the operator keeps of a Workload in its index: no pod templates."""
    spec = workload.get("spec") or {}
    return {
        "apiVersion": workload.get("apiVersion", API_VERSION),
        "kind": "Workload",
        "metadata": {
            k: workload.get("metadata", {}).get(k)
            for k in ("name", "namespace", "uid", "resourceVersion", "generation", "deletionTimestamp", "finalizers")
        },
        "spec": {
            "queueName": spec.get("queueName"),
            "podSets": [
                {k: p.get(k) for k in ("name", "count", "minCount") if k in p} for p in spec.get("podSets") or []
            ],
        },
        "status": copy.deepcopy(workload.get("status") or {}),
    }


def owner_job(workload: Manifest) -> str | None:
    """The ElasticJob that controls a Workload, if one does."""
    for ref in workload.get("metadata", {}).get("ownerReferences") or []:
        if (
            ref.get("kind") == "ElasticJob"
            and ref.get("controller")
            and str(ref.get("apiVersion", "")).startswith("elasticjob.io/")
        ):
            return str(ref.get("name"))
    return None

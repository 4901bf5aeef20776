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
5. Admitted with fewer workers than `replicas` (partial admission, or `kubectl scale` beyond
   the admitted count): the job runs with what it has and asks for the rest with an extension
   Workload (label `elasticjob.io/workload-extension: <k>`, one `workers` PodSet of count =
   wanted - admitted, minCount 1), at most one pending at a time. An admitted extension's workers
   join at the next rendezvous round; scaled down below an extension's first worker, that
   extension is Finished once its pods are gone, which gives its quota back. An evicted extension
   takes only its own workers away (the job shrinks, as on a scale-down) and is made again.
6. The job finished: every Workload is marked `Finished` (Kueue releases the quota), then loses
   its finalizer.

Limits: a Workload's PodSets are written once (Kueue forbids changes while quota is reserved); a
pending one whose counts no longer match is deleted and made again. Worker indices map to the
admitted Workloads in order (the base, then extensions by number), so after an extension in the
middle is evicted, a surviving pod may run on a flavor assigned to another Workload's slot.
Kueue's workload slices (ElasticJobsViaWorkloadSlices) are Alpha, off by default and
all-or-nothing, so they are not used (docs/research/kueue-workload-slices.md). TAS flavors
(`topologyName`) and AdmissionCheck podSetUpdates are not applied.
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


EXTENSION_LABEL = "elasticjob.io/workload-extension"


def workload_name(job: ElasticJob, extension: int = 0) -> str:
    """Kueue's naming convention for a job's Workload: `elasticjob-<job>-<5 hex of kind, group,
    name, uid>`; extension k adds `-x<k>`."""
    digest = hashlib.sha1(f"ElasticJob\nelasticjob.io\n{job.name}\n{job.uid}".encode(), usedforsecurity=False)
    base = f"elasticjob-{job.name}"[:240] + "-" + digest.hexdigest()[:5]
    return f"{base}-x{extension}" if extension else base


def extension_number(workload: Manifest) -> int:
    """0 for a job's base Workload, k for its extension k."""
    value = (workload.get("metadata", {}).get("labels") or {}).get(EXTENSION_LABEL)
    return int(value) if value and str(value).isdigit() else 0


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


def _workload(job: ElasticJob, extension: int, pod_sets: list[Manifest]) -> Manifest:
    labels = naming.job_labels(job)
    if job.uid:
        labels[JOB_UID_LABEL] = job.uid
    if extension:
        labels[EXTENSION_LABEL] = str(extension)
    return {
        "apiVersion": API_VERSION,
        "kind": "Workload",
        "metadata": {
            "name": workload_name(job, extension),
            "namespace": job.namespace,
            "labels": labels,
            "finalizers": [FINALIZER],
            "ownerReferences": [naming.owner_reference(job)],
        },
        "spec": {"queueName": queue_name(job), "active": True, "podSets": pod_sets},
    }


def _worker_set(job: ElasticJob, count: int, min_count: int) -> Manifest:
    workers = builders.build_worker_pod(job, 0)
    pod_set: Manifest = {"name": PODSET_WORKERS, "count": count, "template": _template(workers, (naming.LABEL_INDEX,))}
    if min_count < count:
        pod_set["minCount"] = min_count
    return pod_set


def build_workload(job: ElasticJob) -> Manifest:
    """The job's Workload: PodSets `workers` (count replicas, minCount minReplicas) and `store`."""
    store = builders.build_store_pod(job, 1)
    store_set = {"name": PODSET_STORE, "count": 1, "template": _template(store, (naming.LABEL_GENERATION,))}
    return _workload(job, 0, [_worker_set(job, job.spec.desired_replicas, job.spec.min_replicas), store_set])


def build_extension(job: ElasticJob, extension: int, count: int) -> Manifest:
    """Extension `extension` of the job's quota: `count` more workers, any of them welcome (minCount 1)."""
    return _workload(job, extension, [_worker_set(job, count, 1)])


def with_priority(workload: Manifest, priority: Priority | None) -> Manifest:
    """The Workload with Kueue's priority reference and value (CEL wants both or neither)."""
    if priority is None:
        return workload
    out = copy.deepcopy(workload)
    out["spec"]["priorityClassRef"] = {"group": priority.group, "kind": priority.kind, "name": priority.name}
    out["spec"]["priority"] = priority.value
    return out


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
class Slice:
    """One admitted Workload's workers: indices `start .. start + count - 1`."""

    workload: str
    start: int
    count: int
    placement: Placement


@dataclass(frozen=True)
class Admission:
    cluster_queue: str
    #: the admitted Workloads' workers, base first, then the extensions by number
    slices: tuple[Slice, ...]
    store: Placement
    flavors: tuple[str, ...]

    @property
    def workers(self) -> int:
        return sum(s.count for s in self.slices)

    def placement(self, index: int) -> Placement | None:
        return next((s.placement for s in self.slices if s.start <= index < s.start + s.count), None)


@dataclass(frozen=True)
class QueueState:
    """What a reconcile knows of a queued job's Workloads (the base, extensions) and the flavors."""

    queue: str
    workloads: tuple[Manifest, ...] = ()
    #: ResourceFlavor name -> its spec (nodeLabels, tolerations)
    flavors: dict[str, Manifest] = field(default_factory=dict)

    @property
    def base(self) -> Manifest | None:
        return next((w for w in self.workloads if extension_number(w) == 0), None)

    @property
    def extensions(self) -> list[Manifest]:
        return sorted((w for w in self.workloads if extension_number(w) > 0), key=extension_number)


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


def admitted(workload: Manifest) -> bool:
    """Admitted and not being evicted."""
    return _true(workload, "Admitted") and not _true(workload, "Evicted") and not _true(workload, "Finished")


def _assignments(workload: Manifest, flavors: dict[str, Manifest]) -> dict[str, tuple[Placement, int, tuple[str, ...]]]:
    """PodSet name -> (placement, admitted count, flavor names) of an admitted Workload."""
    counts = {p.get("name"): int(p.get("count", 1)) for p in (workload.get("spec") or {}).get("podSets") or []}
    out = {}
    for assignment in ((workload.get("status") or {}).get("admission") or {}).get("podSetAssignments") or []:
        name = str(assignment.get("name"))
        placement, names = _placement(assignment, flavors)
        count = assignment.get("count")
        out[name] = (placement, int(count) if count is not None else counts.get(name, 1), names)
    return out


def admission(state: QueueState) -> Admission | None:
    """What Kueue admitted of the job: None until its base Workload is admitted; then the base's
    workers and those of every admitted extension."""
    base = state.base
    if base is None or not admitted(base):
        return None
    slices: list[Slice] = []
    used: set[str] = set()
    store = Placement()
    start = 0
    for workload in [base, *state.extensions]:
        if not admitted(workload):
            continue
        found = _assignments(workload, state.flavors)
        if PODSET_STORE in found and workload is base:
            store, _, names = found[PODSET_STORE]
            used.update(names)
        if PODSET_WORKERS in found:
            placement, count, names = found[PODSET_WORKERS]
            used.update(names)
            slices.append(Slice(workload["metadata"]["name"], start, count, placement))
            start += count
    cluster_queue = str(((base.get("status") or {}).get("admission") or {}).get("clusterQueue", ""))
    return Admission(cluster_queue, tuple(slices), store, tuple(sorted(used)))


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


def reserved(workload: Manifest) -> bool:
    return _true(workload, "QuotaReserved")


def stale(workload: Manifest, count: int, min_count: int) -> bool:
    """Whether a Workload without a reservation asks for other worker counts than these (it is
    then made again: Kueue's rule is that PodSets never change while quota is reserved)."""
    if reserved(workload):
        return False
    sets = {p.get("name"): p for p in (workload.get("spec") or {}).get("podSets") or []}
    workers = sets.get(PODSET_WORKERS) or {}
    want_min = min_count if min_count < count else None
    return int(workers.get("count", 1)) != count or workers.get("minCount") != want_min


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
    meta = workload.get("metadata", {})
    keep = ("name", "namespace", "uid", "resourceVersion", "generation", "deletionTimestamp", "finalizers")
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k == EXTENSION_LABEL}
    return {
        "apiVersion": workload.get("apiVersion", API_VERSION),
        "kind": "Workload",
        "metadata": {**{k: meta.get(k) for k in keep}, "labels": labels},
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

"""Carry out what the planner decided for a queued job's Kueue Workload (`planner.WorkloadAction`).

The planner stays pure; this module makes its few calls: the priority lookup when the Workload
is made (a `kueue.x-k8s.io/priority-class` label names a WorkloadPriorityClass, else the pods'
`priorityClassName` names a PriorityClass; Kueue needs the value next to the reference), the
create, the status write and the finalizer. Each is idempotent: a 409 (the Workload changed since
the index showed it) is left to the next reconcile, which reads again.
Limits: a priority class that does not exist is left out, and the Workload gets priority 0.
"""

from __future__ import annotations

from elasticjob_api.models import ElasticJob

from elasticjob_operator import queueing
from elasticjob_operator.kube import Kube
from elasticjob_operator.planner import WorkloadAction


def priority(kube: Kube, job: ElasticJob) -> queueing.Priority | None:
    """The job's Kueue priority: its WorkloadPriorityClass label, else its pods' PriorityClass."""
    labels = job.metadata.get("labels") or {}
    wanted = labels.get(queueing.PRIORITY_LABEL)
    if wanted:
        found = kube.get_optional(queueing.API_VERSION, "WorkloadPriorityClass", str(wanted))
        return queueing.Priority("WorkloadPriorityClass", str(wanted), int(found["value"])) if found else None
    pods = job.spec.scheduling.priority_class_name
    if pods:
        found = kube.get_optional("scheduling.k8s.io/v1", "PriorityClass", pods)
        return queueing.Priority("PriorityClass", pods, int(found["value"])) if found else None
    return None


def carry_out(kube: Kube, job: ElasticJob, action: WorkloadAction) -> str | None:
    """Do `action` to one of the job's Workloads; the reason a Workload could not be made, when
    Kueue's API is not installed."""
    workload = action.workload
    if action.create:
        return kube.create_optional(queueing.with_priority(workload, priority(kube, job)))
    if action.status is not None and not kube.patch_status(workload, action.status):
        return None  # changed meanwhile: the next reconcile decides again
    if action.release or action.delete:
        kube.remove_finalizer(workload, queueing.FINALIZER)
    if action.delete:
        kube.delete_object(workload)
    return None

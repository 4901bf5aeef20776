"""Kubeflow PyTorchJob (`kubeflow.org/v1`) -> ElasticJob: what `elasticjob convert` does.

`convert(pytorchjob)` returns the ElasticJob manifest (validated by the models) and notes, one per
field that could not be carried over, each saying why. Field by field (docs/migrating-from-pytorchjob.md):

* `pytorchReplicaSpecs`: the Worker's template (else the Master's) is the ElasticJob template,
  unchanged; a Master is one more worker (ElasticJob's ranks are symmetric, its store is its own);
  the replica specs' `restartPolicy` is dropped (the launcher restarts workers, pods are never
  restarted in place);
* `elasticPolicy`: `minReplicas`/`maxReplicas`/`maxRestarts` as they are; `rdzvBackend` c10d
  kept, etcd dropped; `rdzvConf` timeouts into `spec.rendezvous`; `nProcPerNode` (or
  `spec.nprocPerNode`) as an integer, `auto` or `gpu` (both mean the GPUs requested);
  `rdzvHost`/`rdzvId`/`standalone` dropped (the operator runs the store); `metrics` dropped
  (an HPA targets the ElasticJob's scale subresource instead);
* `runPolicy`: `cleanPodPolicy`, `ttlSecondsAfterFinished`, `activeDeadlineSeconds`, `suspend`
  as they are; `backoffLimit` -> `failurePolicy.backoffLimit`; `schedulingPolicy.priorityClass` ->
  `scheduling.priorityClassName`, and `minAvailable` -> `scheduling.gang` (the gang's minimum is
  always minReplicas), with the template's `schedulerName` (none: kube-scheduler's Workload API).

Limits: only `kubeflow.org/v1` PyTorchJobs; Kubeflow Trainer v2 TrainJobs are not converted.
"""

from __future__ import annotations

import copy
from typing import Any

from elasticjob_api.models import ElasticJob

API_VERSION = "kubeflow.org/v1"
#: rdzvConf keys that have a field in spec.rendezvous
RDZV_KEYS = {
    "join_timeout": "joinTimeoutSeconds",
    "last_call_timeout": "lastCallTimeoutSeconds",
    "close_timeout": "closeTimeoutSeconds",
    "heartbeat_timeout": "heartbeatTimeoutSeconds",
}


class ConversionError(ValueError):
    """The input is not a PyTorchJob this converter can read; the message says why."""


def _replicas(specs: dict[str, Any], notes: list[str]) -> tuple[int, dict[str, Any]]:
    """(total replicas, the template) from pytorchReplicaSpecs."""
    worker, master = specs.get("Worker"), specs.get("Master")
    if worker is None and master is None:
        raise ConversionError("spec.pytorchReplicaSpecs has neither Worker nor Master")
    unknown = sorted(set(specs) - {"Worker", "Master"})
    if unknown:
        notes.append(f"pytorchReplicaSpecs {', '.join(unknown)}: not carried over (ElasticJob has one worker pool)")
    total = 0
    for role, spec in (("Master", master), ("Worker", worker)):
        if spec is None:
            continue
        total += int(spec.get("replicas", 1))
        if spec.get("restartPolicy"):
            notes.append(
                f"{role}.restartPolicy {spec['restartPolicy']}: dropped (worker pods never restart in place; "
                "the launcher restarts the workers, up to maxRestarts job-wide)"
            )
    if master is not None and worker is not None:
        notes.append(
            f"Master: counted as one more worker, with the Worker's template ({total} in all): ElasticJob's "
            "ranks are symmetric and it runs its own rendezvous store"
        )
    source = worker if worker is not None else master
    template = (source or {}).get("template")
    if not isinstance(template, dict):
        raise ConversionError("the Worker (or Master) replica spec has no template")
    return total, copy.deepcopy(template)


def _nproc(value: Any, notes: list[str]) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    if value in ("auto", "gpu"):
        return "auto"
    notes.append(f"nProcPerNode {value!r}: not carried over (use an integer; 'auto' counts the GPUs requested)")
    return None


def _rendezvous(policy: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    backend = policy.get("rdzvBackend")
    if backend == "c10d":
        out["backend"] = "c10d"
    elif backend:
        notes.append(
            f"rdzvBackend {backend}: not supported; the job uses its own c10d store with the elasticjob backend"
        )
    if policy.get("rdzvPort"):
        if backend == "c10d":
            out["port"] = int(policy["rdzvPort"])
        else:
            notes.append(f"rdzvPort {policy['rdzvPort']}: dropped (it was the {backend} service's port)")
    for key in ("rdzvHost", "rdzvId"):
        if policy.get(key):
            notes.append(f"{key}: dropped (the operator runs the job's store and names the rendezvous)")
    for item in policy.get("rdzvConf") or []:
        key, value = str(item.get("key", "")), item.get("value")
        if key in RDZV_KEYS and str(value).isdigit():
            out[RDZV_KEYS[key]] = int(value)
        else:
            notes.append(f"rdzvConf {key}={value}: not carried over (spec.rendezvous has no such setting)")
    return out


def _elastic(policy: dict[str, Any], total: int, spec: dict[str, Any], notes: list[str]) -> None:
    low = int(policy.get("minReplicas", total))
    high = int(policy.get("maxReplicas", max(total, low)))
    spec["minReplicas"], spec["maxReplicas"] = low, high
    spec["replicas"] = min(max(total, low), high)
    if "maxRestarts" in policy:
        spec["maxRestarts"] = int(policy["maxRestarts"])
    rendezvous = _rendezvous(policy, notes)
    if rendezvous:
        spec["rendezvous"] = rendezvous
    if policy.get("standalone"):
        notes.append("standalone: dropped (every ElasticJob rendezvouses through its own store)")
    if policy.get("metrics"):
        notes.append(
            "metrics: not carried over; create a HorizontalPodAutoscaler whose scaleTargetRef is this "
            "ElasticJob (it has a scale subresource) with these metrics"
        )


def _run_policy(policy: dict[str, Any], template: dict[str, Any], spec: dict[str, Any], notes: list[str]) -> None:
    for key in ("cleanPodPolicy", "ttlSecondsAfterFinished", "activeDeadlineSeconds", "suspend"):
        if key in policy:
            spec[key] = policy[key]
    if "backoffLimit" in policy:
        spec["failurePolicy"] = {"backoffLimit": int(policy["backoffLimit"])}
    scheduling: dict[str, Any] = {}
    sched = policy.get("schedulingPolicy") or {}
    if sched.get("priorityClass"):
        scheduling["priorityClassName"] = sched["priorityClass"]
    if "minAvailable" in sched:
        scheduler = (template.get("spec") or {}).get("schedulerName")
        scheduling.update(gang=True, **({"schedulerName": scheduler} if scheduler else {}))
        by = scheduler or "kube-scheduler (Workload API)"
        notes.append(f"schedulingPolicy.minAvailable {sched['minAvailable']}: a gang of minReplicas, by {by}")
    for key in ("queue", "minResources", "scheduleTimeoutSeconds"):
        if key in sched:
            notes.append(f"schedulingPolicy.{key}: not carried over (set the scheduler's own labels on the template)")
    if scheduling:
        spec["scheduling"] = scheduling
    if policy.get("managedBy"):
        notes.append("managedBy: dropped (the ElasticJob operator manages the job)")


def convert(pytorchjob: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The ElasticJob for a PyTorchJob, and what could not be carried over (see the module docstring)."""
    if pytorchjob.get("kind") != "PyTorchJob" or pytorchjob.get("apiVersion") != API_VERSION:
        raise ConversionError(
            f"expected kind PyTorchJob, apiVersion {API_VERSION}; got kind {pytorchjob.get('kind')!r}, "
            f"apiVersion {pytorchjob.get('apiVersion')!r}"
        )
    notes: list[str] = []
    source = pytorchjob.get("spec") or {}
    total, template = _replicas(source.get("pytorchReplicaSpecs") or {}, notes)
    spec: dict[str, Any] = {}
    policy = source.get("elasticPolicy") or {}
    _elastic(policy, total, spec, notes)
    nproc = _nproc(source.get("nprocPerNode", policy.get("nProcPerNode")), notes)
    if nproc is not None:
        spec["nprocPerNode"] = nproc
    _run_policy(source.get("runPolicy") or {}, template, spec, notes)
    spec["template"] = template
    meta = pytorchjob.get("metadata") or {}
    metadata = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if meta.get(k)}
    job = {"apiVersion": "elasticjob.io/v1alpha1", "kind": "ElasticJob", "metadata": metadata, "spec": spec}
    try:
        ElasticJob.model_validate(job)
    except ValueError as exc:
        raise ConversionError(f"the converted job is not a valid ElasticJob: {exc}") from None
    return job, notes

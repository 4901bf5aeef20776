"""Read facts out of observed pod dicts (pure helpers shared by the planner)."""

from __future__ import annotations

from typing import Any

from elasticjob_operator import naming

#: the metadata the planner and the timer read; the rest (managedFields, ownerReferences...) is dropped
_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp")


def essentials(pod: dict[str, Any]) -> dict[str, Any]:
    """The part of a pod the operator reads: what its index keeps, a fraction of the whole body.

    Everything the helpers of this module and `failures` look at is kept: the metadata above,
    `spec.nodeName` and the whole status. The pod spec (containers, env, volumes) is not.
    """
    meta = pod.get("metadata") or {}
    slim: dict[str, Any] = {"metadata": {k: meta[k] for k in _METADATA if k in meta}}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        slim["spec"] = {"nodeName": node}
    if pod.get("status") is not None:
        slim["status"] = pod["status"]
    return slim


def role(pod: dict[str, Any]) -> str | None:
    return (pod.get("metadata", {}).get("labels") or {}).get(naming.LABEL_ROLE)


def name(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["name"])


def label_int(pod: dict[str, Any], key: str) -> int | None:
    value = (pod.get("metadata", {}).get("labels") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def terminating(pod: dict[str, Any]) -> bool:
    return pod.get("metadata", {}).get("deletionTimestamp") is not None


def node_name(pod: dict[str, Any]) -> str | None:
    value = (pod.get("spec") or {}).get("nodeName")
    return str(value) if value else None


def is_ready(pod: dict[str, Any]) -> bool:
    if phase(pod) != "Running":
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def waiting_reason(pod: dict[str, Any]) -> str:
    """Why a pod is not running yet, in the scheduler's or kubelet's own words."""
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"Pending: {cond.get('message') or cond.get('reason') or 'unschedulable'}"
    for cstatus in status.get("containerStatuses") or []:
        waiting = (cstatus.get("state") or {}).get("waiting")
        if waiting:
            detail = waiting.get("message") or ""
            return f"{waiting.get('reason', 'Waiting')}{': ' + detail if detail else ''}"
    if phase(pod) == "Running":
        return "Running, not ready"
    return phase(pod)

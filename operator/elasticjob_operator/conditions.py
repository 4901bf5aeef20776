"""Kubernetes-style conditions: one per phase, the current one True, and conditions of other
types that outlive phase changes (pure)."""

from __future__ import annotations

from typing import Any

from elasticjob_api.models import Phase


def set_phase_conditions(
    previous: list[dict[str, Any]], phase: Phase, reason: str, message: str, now: str
) -> list[dict[str, Any]]:
    """Mark `phase`'s condition True and every other phase's True condition False.

    `lastTransitionTime` changes only when a condition's status changes, so `kubectl describe`
    tells when each state began.
    """
    by_type = {c["type"]: dict(c) for c in previous}
    phases = {p.value for p in Phase}
    for ctype, cond in by_type.items():
        if ctype in phases and ctype != phase.value and cond.get("status") == "True":
            cond.update(status="False", lastTransitionTime=now)
    current = by_type.get(phase.value)
    if current is None or current.get("status") != "True":
        current = {"type": phase.value, "status": "True", "lastTransitionTime": now}
    current.update(reason=reason, message=message)
    by_type[phase.value] = current
    order = [p.value for p in Phase]
    return sorted(by_type.values(), key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))


#: with scheduling.gang: True once the PodGroup exists, False (GangSchedulerMissing) if its API is absent
GANG_SCHEDULING = "GangScheduling"


def set_condition(previous: list[dict[str, Any]], condition: dict[str, str], now: str) -> list[dict[str, Any]]:
    """Set one non-phase condition (type, status, reason, message), keeping the others;
    `lastTransitionTime` moves when its status changes."""
    out = [dict(c) for c in previous]
    current = next((c for c in out if c["type"] == condition["type"]), None)
    if current is None:
        current = {"type": condition["type"]}
        out.append(current)
    changed = current.get("status") != condition["status"]
    current.update(condition)
    if changed:
        current["lastTransitionTime"] = now
    return out

"""Classify why a worker pod failed, from its status and the launcher's own report (pure).

The class, not the exit code alone, decides retry or fail (`FailurePolicy.action_for`):

| class          | seen as                                                                  |
|----------------|--------------------------------------------------------------------------|
| UserError      | launcher exit 3 (script failed, restarts spent), or any plain non-zero   |
| OOMKilled      | container terminated with reason OOMKilled                               |
| Signal         | exit 128+N, reason Evicted/Preempted/Terminated, or launcher exit 78      |
| NodeLost       | the pod's node is NotReady/gone, or the pod reason is NodeLost            |
| StoreLost      | launcher exit 75 (store unreachable)                                     |
| Timeout        | launcher exit 76 (rendezvous timeout) or reason DeadlineExceeded         |
| Infrastructure | launcher exit 4 or 77 (agent failure, bad launcher configuration)         |

A pod with the condition `DisruptionTarget` (scheduler preemption, an API eviction, the taint
manager, kubelet's node-pressure eviction) was disrupted, not failed: `disruption()` names the
cause, and the planner replaces such a pod without counting it, whatever its class.

`failurePolicy.rules` may also match exit codes: the code they see (`Failure.rule_exit_code`) is
the trainer container's, except the launcher's 3 (script failed, restarts spent), which stands
for the failed worker process's own code when the pod's launcher reported it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticjob_api.exitcodes import ExitCode
from elasticjob_api.models import FailureClass, trainer_name

_EXIT_CLASSES = {
    ExitCode.USER_ERROR: FailureClass.USER_ERROR,
    ExitCode.STORE_UNREACHABLE: FailureClass.STORE_LOST,
    ExitCode.RENDEZVOUS_TIMEOUT: FailureClass.TIMEOUT,
    ExitCode.INFRASTRUCTURE: FailureClass.INFRASTRUCTURE,
    ExitCode.CONFIG_ERROR: FailureClass.INFRASTRUCTURE,
    ExitCode.DRAINED: FailureClass.SIGNAL,
}
_SIGNAL_REASONS = frozenset({"Evicted", "Preempted", "Preempting", "Terminated", "Shutdown", "NodeShutdown"})


@dataclass(frozen=True)
class Failure:
    failure_class: FailureClass
    exit_code: int | None
    message: str
    #: the DisruptionTarget condition's reason (e.g. PreemptionByScheduler); None: a real failure
    disruption: str | None = None
    #: the exit code `failurePolicy.rules` match (see the module docstring)
    rule_exit_code: int | None = None


def disruption(pod: dict[str, Any]) -> str | None:
    """The reason of the pod's DisruptionTarget condition, if it is True (else None)."""
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return str(cond.get("reason") or "DisruptionTarget")
    return None


def _trainer_termination(pod: dict[str, Any]) -> dict[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    trainer = trainer_name(str(s.get("name")) for s in statuses)
    for status in statuses:
        if status.get("name") == trainer:
            state = status.get("state") or {}
            terminated = state.get("terminated") or (status.get("lastState") or {}).get("terminated")
            return dict(terminated) if terminated else None
    return None


def classify_exit(exit_code: int | None, reason: str | None) -> FailureClass:
    """The class of one terminated trainer container."""
    if reason == "OOMKilled":
        return FailureClass.OOM_KILLED
    if reason in _SIGNAL_REASONS:
        return FailureClass.SIGNAL
    if reason == "DeadlineExceeded":
        return FailureClass.TIMEOUT
    if exit_code is None:
        return FailureClass.INFRASTRUCTURE
    if exit_code in _EXIT_CLASSES:
        return _EXIT_CLASSES[ExitCode(exit_code)]
    if exit_code > 128:
        return FailureClass.SIGNAL
    return FailureClass.USER_ERROR


def classify_pod(pod: dict[str, Any], *, node_lost: bool = False, reported_exit_code: int | None = None) -> Failure:
    """Why this (failed or lost) worker pod failed; `reported_exit_code`: the exit code of the
    worker process its launcher last reported failed, if any."""
    status = pod.get("status") or {}
    disrupted = disruption(pod)
    if node_lost or status.get("reason") == "NodeLost":
        node = pod.get("spec", {}).get("nodeName")
        return Failure(FailureClass.NODE_LOST, None, f"node {node} was lost", disrupted)
    terminated = _trainer_termination(pod)
    pod_reason = status.get("reason")
    if terminated is None:
        klass = classify_exit(None, pod_reason)
        message = status.get("message") or pod_reason or "the pod failed before the trainer ran"
        return Failure(klass, None, message, disrupted)
    exit_code = terminated.get("exitCode")
    reason = terminated.get("reason") or pod_reason
    klass = classify_exit(exit_code, reason)
    message = terminated.get("message") or f"trainer exited with code {exit_code} ({reason or 'no reason'})"
    rule_code = reported_exit_code if exit_code == ExitCode.USER_ERROR and reported_exit_code else exit_code
    return Failure(klass, exit_code, str(message)[:1024], disrupted, rule_code)

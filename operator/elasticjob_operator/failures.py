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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticjob_api.exitcodes import ExitCode
from elasticjob_api.models import TRAINER_CONTAINER, FailureClass

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


def _trainer_termination(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == TRAINER_CONTAINER:
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


def classify_pod(pod: dict[str, Any], *, node_lost: bool = False) -> Failure:
    """Why this (failed or lost) worker pod failed."""
    status = pod.get("status") or {}
    if node_lost or status.get("reason") == "NodeLost":
        return Failure(FailureClass.NODE_LOST, None, f"node {pod.get('spec', {}).get('nodeName')} was lost")
    terminated = _trainer_termination(pod)
    pod_reason = status.get("reason")
    if terminated is None:
        klass = classify_exit(None, pod_reason)
        return Failure(klass, None, status.get("message") or pod_reason or "the pod failed before the trainer ran")
    exit_code = terminated.get("exitCode")
    reason = terminated.get("reason") or pod_reason
    klass = classify_exit(exit_code, reason)
    message = terminated.get("message") or f"trainer exited with code {exit_code} ({reason or 'no reason'})"
    return Failure(klass, exit_code, str(message)[:1024])

"""The `Stalled` condition, from the launchers' Hang reports (pure).

A launcher with a stall timeout (`spec.stallTimeoutSeconds`, its `--stall-timeout`) that finds a
rank stuck reports `lastFailure` with class `Hang` before it acts: the rank, the last step, the
seconds stuck, the round and the stuck rank's Python stack (launcher/.../stall.py). It then
kills the group, which restarts through the job-wide restart path.

`assess(status)` reads the newest failure of the worker reports:
* a Hang in the current round (no report of a later round yet): `Stalled` True, reason `Hang`,
  the launcher's summary and the top of the stack as the message;
* a Hang of an earlier round: `Stalled` False, reason `GroupRestarted` (the group re-formed);
* any other newest failure while `Stalled` is True: False, reason `NoLongerStalled`.
The planner posts a `Stalled` Warning Event when the condition turns True (counted by the
decisions metric with cause `Hang`), and fails the job with reason `Hang` if
`failurePolicy.rules` say `Fail` for that class; the default, `Retry`, leaves the restart to the
launchers.
Limits: a report lost on the way (the API unreachable for the launcher) is not seen; a hang's
round is that of the reporting pod, so a pod that joined late is judged by its own rounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticjob_api.models import ElasticJobStatus, FailureClass, LastFailure

STALLED = "Stalled"
#: lines of the launcher's report kept in the condition: the summary, the others, the stack's top
MESSAGE_LINES = 8
MESSAGE_LIMIT = 1500


@dataclass(frozen=True)
class Assessment:
    #: the condition to set (type, status, reason, message)
    condition: dict[str, str]
    #: a Hang of the current round
    stalled: bool
    failure: LastFailure


def _newest(status: ElasticJobStatus) -> LastFailure | None:
    failures = [r.last_failure for r in status.restarts.workers.values() if r.last_failure is not None]
    return max(failures, key=lambda f: (f.time or "", f.round or 0), default=None)


def summary(failure: LastFailure) -> str:
    """The condition's message: the head of the launcher's report."""
    lines = (failure.message or "").strip().splitlines()
    text = "\n".join(lines[:MESSAGE_LINES]) or f"rank {failure.global_rank} stalled"
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def assess(status: ElasticJobStatus) -> Assessment | None:
    """The `Stalled` condition the worker reports call for; None: leave it as it is."""
    failure = _newest(status)
    if failure is None:
        return None
    was_stalled = any(c.type == STALLED and c.status == "True" for c in status.conditions)
    if failure.failure_class != FailureClass.HANG.value:
        if not was_stalled:
            return None
        cond = {"type": STALLED, "status": "False", "reason": "NoLongerStalled",
                "message": f"the newest failure is rank {failure.global_rank}'s {failure.failure_class}"}  # fmt: skip
        return Assessment(cond, False, failure)
    rounds = [r.round for r in status.restarts.workers.values() if r.round is not None]
    current = max(rounds, default=None)
    if failure.round is not None and current is not None and current > failure.round:
        message = f"rank {failure.global_rank} hung in round {failure.round}; the group re-formed in round {current}"
        cond = {"type": STALLED, "status": "False", "reason": "GroupRestarted", "message": message}
        return Assessment(cond, False, failure)
    cond = {"type": STALLED, "status": "True", "reason": "Hang", "message": summary(failure)}
    return Assessment(cond, True, failure)

"""The `Stalled` condition, from the launchers' Hang reports (pure).

A launcher with a stall timeout (`spec.stallTimeoutSeconds`, its `--stall-timeout`) that finds a
rank stuck reports `lastFailure` with class `Hang` before it acts: the rank, the last step, the
seconds stuck, the round and the stuck rank's Python stack (launcher/.../stall.py). It then
kills the group, which restarts through the job-wide restart path.

`assess(status)` reads the newest failure of the worker reports:
* a Hang not seen before (no `Stalled` condition, or one that changed before the Hang's time and
  says something else): `Stalled` True, reason `Hang`, the launcher's summary and the top of the
  stack as the message, and `new` set, so the planner posts a `Stalled` Warning Event (counted by
  `elasticjob_hangs_total`). This holds even when the group has already re-formed by the time
  the operator reads the report (a restart takes seconds), so no hang goes unsaid;
* a Hang already said, of an earlier round than the newest reported: `Stalled` False, reason
  `GroupRestarted`;
* any other newest failure while `Stalled` is True: False, reason `NoLongerStalled`.
The planner fails the job with reason `Hang` if `failurePolicy.rules` say `Fail` for that class;
the default, `Retry`, leaves the restart to the launchers.
Limits: a report lost on the way (the API unreachable for the launcher) is not seen; a hang's
round is that of the reporting pod, so a pod that joined late is judged by its own rounds; times
are whole seconds (metav1.Time), so a second hang reported within the second `Stalled` last
changed, with the same words, is taken for the first.
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
    #: a Hang not said before: the planner posts the Event
    new: bool
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
    before = next((c for c in status.conditions if c.type == STALLED), None)
    if failure.failure_class != FailureClass.HANG.value:
        if before is None or before.status != "True":
            return None
        cond = {"type": STALLED, "status": "False", "reason": "NoLongerStalled",
                "message": f"the newest failure is rank {failure.global_rank}'s {failure.failure_class}"}  # fmt: skip
        return Assessment(cond, False, failure)
    said = summary(failure)
    stalled = {"type": STALLED, "status": "True", "reason": "Hang", "message": said}
    changed = before.last_transition_time if before is not None else None
    if before is None or (before.message != said and (changed or "") < (failure.time or "")):
        return Assessment(stalled, True, failure)
    rounds = [r.round for r in status.restarts.workers.values() if r.round is not None]
    current = max(rounds, default=None)
    if failure.round is not None and current is not None and current > failure.round:
        message = f"rank {failure.global_rank} hung in round {failure.round}; the group re-formed in round {current}"
        return Assessment({"type": STALLED, "status": "False", "reason": "GroupRestarted", "message": message},
                          False, failure)  # fmt: skip
    return Assessment(stalled, False, failure) if before.status == "True" else None

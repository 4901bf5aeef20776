"""A launcher's Hang report as the planner reads it: Stalled, an Event, the failure policy (no cluster)."""

from __future__ import annotations

from typing import Any

from elasticjob_operator import builders

from .test_planner import ISO, job, run, running_status, store, worker

HANG = {
    "globalRank": 1,
    "failureClass": "Hang",
    "round": 2,
    "step": 3,
    "stalledSeconds": 10.2,
    "time": ISO,
    "message": "rank 1 stalled outside any collective for 10.2s (timeout 10s) at step 3\n"
    'File "train.py", line 40 in main\n' + "".join(f'File "lib.py", line {i} in f\n' for i in range(20)),
}


def reports(round_: int, failure: dict[str, Any] | None = HANG) -> dict[str, Any]:
    entry = {"restarts": 0, "round": round_, "worldSize": 4, **({"lastFailure": failure} if failure else {})}
    return {"mnist-worker-0": {"restarts": 0, "round": round_, "worldSize": 4}, "mnist-worker-1": entry}


def stalled(p: Any) -> dict[str, Any]:
    return next(c for c in p.status["conditions"] if c["type"] == "Stalled")


def test_a_hang_of_the_current_round_is_stalled_with_the_launchers_words_and_an_event() -> None:
    j = job({"stallTimeoutSeconds": 10}, status=running_status(restarts={"total": 0, "workers": reports(2)}))
    p = run(j, [store(j), worker(j, 0), worker(j, 1)])
    cond = stalled(p)
    assert (cond["status"], cond["reason"]) == ("True", "Hang")
    assert cond["message"].startswith("rank 1 stalled outside any collective") and "train.py" in cond["message"]
    assert len(cond["message"].splitlines()) == 8  # the head of the report, not the whole stack
    [event] = [e for e in p.events if e.reason == "Stalled"]
    assert event.type == "Warning" and event.cause == "Hang"
    assert p.status["phase"] == "Running"  # the launchers restart the group: Retry, the default
    # said once: the next reconcile keeps the condition and posts nothing
    again = run(job({"stallTimeoutSeconds": 10}, status={**running_status(), **p.status,
                 "restarts": {"total": 0, "workers": reports(2)}}), [store(j), worker(j, 0), worker(j, 1)])  # fmt: skip
    assert stalled(again)["status"] == "True" and not [e for e in again.events if e.reason == "Stalled"]


def test_the_group_re_formed_turns_stalled_false() -> None:
    before = {"type": "Stalled", "status": "True", "reason": "Hang", "message": "m", "lastTransitionTime": ISO}
    j = job(status=running_status(conditions=[before], restarts={"total": 1, "workers": reports(3)}))
    cond = stalled(run(j, [store(j), worker(j, 0), worker(j, 1)]))
    assert (cond["status"], cond["reason"]) == ("False", "GroupRestarted") and "round 2" in cond["message"]


def test_a_rule_may_fail_the_job_on_a_hang() -> None:
    rules = [{"failureClass": "Hang", "action": "Fail"}]
    j = job({"failurePolicy": {"rules": rules}}, status=running_status(restarts={"total": 0, "workers": reports(2)}))
    p = run(j, [store(j), worker(j, 0), worker(j, 1)])
    assert p.status["phase"] == "Failed"
    failed = next(c for c in p.status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "Hang" and "rank 1 stalled" in failed["message"]


def test_no_hang_no_condition_and_the_timeout_reaches_the_launcher() -> None:
    j = job(status=running_status(restarts={"total": 0, "workers": reports(2, None)}))
    assert all(c["type"] != "Stalled" for c in run(j, [store(j), worker(j, 0), worker(j, 1)]).status["conditions"])
    env = {e["name"]: e.get("value") for e in builders.build_worker_pod(job({"stallTimeoutSeconds": 10}), 0)
           ["spec"]["containers"][0]["env"]}  # fmt: skip
    assert env["ELASTICJOB_STALL_TIMEOUT"] == "10"
    plain = builders.build_worker_pod(job(), 0)["spec"]["containers"][0]["env"]
    assert "ELASTICJOB_STALL_TIMEOUT" not in {e["name"] for e in plain}


def test_a_hang_first_seen_after_the_group_re_formed_is_still_said_then_cleared() -> None:
    j = job(status=running_status(restarts={"total": 1, "workers": reports(3)}))
    pods = [store(j), worker(j, 0), worker(j, 1)]
    first = run(j, pods)
    assert stalled(first)["status"] == "True" and [e.reason for e in first.events].count("Stalled") == 1
    later = job(status={**running_status(), **first.status, "restarts": {"total": 1, "workers": reports(3)}})
    cond = stalled(run(later, pods))
    assert (cond["status"], cond["reason"]) == ("False", "GroupRestarted")
    assert not [e for e in run(later, pods).events if e.reason == "Stalled"]

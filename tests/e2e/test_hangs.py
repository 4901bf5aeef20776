"""A hung rank on Kubernetes (marked `faults`): `spec.stallTimeoutSeconds`, the launchers' Hang
report, the `Stalled` condition and Event, a worker-group restart and the job finishing from its
checkpoint.

The workers run tests/launcher/hang_check.py (from a ConfigMap) at world size 2: each step is an all_reduce, checkpointed to a hostPath directory the test reads; on the
first attempt the script hangs at step 3 and the restarted group resumes there. Two hangs:
* rank 0 blocked inside all_reduce while rank 1 sleeps, with no progress API: found by the
  collective stamps of the preloaded workers;
* rank 1 asleep outside any collective, reporting steps through `elasticjob_launcher.progress`:
  found by the "no progress" rule, and named first.
Each costs about the timeout (5 s) plus a restart on top of a short job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .helpers import REPO, Kube, job_manifests, phase, wait_for
from .test_faults import LAST_CALL, status

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
SCRIPT = REPO / "tests" / "launcher" / "hang_check.py"
STEPS, HANG_STEP, TIMEOUT = 8, 3, 5


def hang_job(name: str, out: Path, pods: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """World size 2: `pods` worker pods of 2 / `pods` processes."""
    cm, job = job_manifests(name, replicas=pods, min_replicas=pods, command=["python", "/opt/hang/hang_check.py"],
                            spec={**LAST_CALL, "nprocPerNode": 2 // pods, "stallTimeoutSeconds": TIMEOUT},
                            shared_checkpoints=out)  # fmt: skip
    script = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-hang"},
              "data": {"hang_check.py": SCRIPT.read_text()}}  # fmt: skip
    pod = job["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "hang", "configMap": {"name": f"{name}-hang"}})
    trainer = pod["containers"][0]
    trainer["volumeMounts"].append({"name": "hang", "mountPath": "/opt/hang", "readOnly": True})
    values = {"OUT": "/checkpoints", "STEPS": str(STEPS), "HANG_STEP": str(HANG_STEP), "STEP_SLEEP": "0.2", **env}
    trainer["env"] = [e for e in trainer["env"] if e["name"] != "CHECKPOINT_DIR"]
    trainer["env"] += [{"name": k, "value": v} for k, v in values.items()]
    return [cm, script, job]


def stalled_events(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    events = kube.json("get", "events", "-n", namespace)["items"]
    return [e for e in events if e.get("reason") == "Stalled" and e["involvedObject"].get("name") == name]


@pytest.mark.parametrize(
    ("pods", "env", "rank", "where"),
    [
        # two pods: rank 0's agent finds it in all_reduce; rank 1's agent sees nothing (no progress
        # API) and restarts its worker when rank 0's agent starts a new round
        pytest.param(
            2,
            {"HANG": "collective"},
            0,
            "in all_reduce",
            id="in-a-collective",
            marks=pytest.mark.kind("the hung group is killed in real containers, the SIGKILL escalation included"),
        ),
        # one pod of two ranks: its agent finds both and names the one outside first
        pytest.param(
            1,
            {"HANG": "outside", "HANG_RANK": "1", "USE_PROGRESS": "1"},
            1,
            "outside any collective",
            id="outside-with-progress",
        ),
    ],
)
def test_a_hung_rank_is_stalled_then_the_group_restarts_and_finishes(
    operator: Kube, namespace: str, tmp_path: Path, pods: int, env: dict[str, str], rank: int, where: str
) -> None:
    out = tmp_path / "out"
    operator.apply(hang_job("hang", out, pods, env), namespace)
    wait_for(lambda: phase(operator, "hang", namespace) in ("Succeeded", "Failed"), 240, "the job to finish",
             lambda: operator.story(namespace))  # fmt: skip
    st = status(operator, "hang", namespace)
    assert st["phase"] == "Succeeded" and st["restarts"]["total"] == 1, operator.story(namespace)
    # the launcher's report: the rank, where, the step, how long, and the script's line
    hangs = [r["lastFailure"] for r in st["restarts"]["workers"].values() if r.get("lastFailure")]
    [hang] = [h for h in hangs if h["failureClass"] == "Hang"]
    assert hang["globalRank"] == rank and hang["stalledSeconds"] >= TIMEOUT, hang
    assert where in hang["message"] and "hang_check.py" in hang["message"], hang
    # the operator: the condition (True while the hung round was newest, then GroupRestarted) and one Event
    [cond] = [c for c in st["conditions"] if c["type"] == "Stalled"]
    assert cond["reason"] in ("Hang", "GroupRestarted"), cond
    [event] = stalled_events(operator, namespace, "hang")
    assert event["type"] == "Warning" and f"rank {rank}" in event["message"] and where in event["message"], event
    # resumed from the checkpoint of the hung step, not from 0
    results = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["restart"], r["start"], r["world"]) for r in results] == [(1, HANG_STEP, 2)] * 2, results

"""B2a and B5: a worker process killed mid-training, on the local control plane.

- B2a recovery: from the SIGKILL to every rank finishing its next step (the step script logs
  each step's time per rank).
- B5 status freshness: from the SIGKILL to `status.restarts.total` rising in the ElasticJob.

Baseline for B2a: the same kill under plain torchrun (4 local agents), measured in the same run.
B5 has no baseline: torchrun has no status to be fresh.
Limits: B2b (pod deleted) and B2c (store killed) are not measured yet, and recovery is not yet
split into detection, rendezvous and first step.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from elasticjob_bench.launch import NODES, NPROC, SCRIPT, Operator, _free_port, step_times

STEPS, STEP_SLEEP, KILL_AT = 600, 0.05, 30


def _worker_pid(marker: str) -> int | None:
    """A training process (LOCAL_RANK=1) whose environment holds `marker` (its MARK_DIR)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"MARK_DIR={marker}".encode() in env and b"LOCAL_RANK=1" in env:
            return int(pid)
    return None


def _kill_and_time(
    marks: Path, marker: str, status: Any = None, alive: Any = None, timeout: float = 180
) -> dict[str, float]:
    """Wait for step KILL_AT everywhere, kill one worker, time recovery (and status if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        times = step_times(marks)
        if len(times) == NODES * NPROC and all(t and t[-1][0] >= KILL_AT for t in times.values()):
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("training did not reach the kill step")
    pid = _worker_pid(marker)
    if pid is None:
        raise RuntimeError("no worker process to kill")
    t_fault = time.time()
    os.kill(pid, signal.SIGKILL)
    out: dict[str, float] = {}
    while time.monotonic() < deadline:
        if status is not None and "status_s" not in out and (status().get("restarts") or {}).get("total", 0) >= 1:
            out["status_s"] = time.time() - t_fault
        after = [[t for _, t in steps if t > t_fault] for steps in step_times(marks).values()]
        if "recovery_s" not in out and len(after) == NODES * NPROC and all(after):
            out["recovery_s"] = max(a[0] for a in after) - t_fault
        if "recovery_s" in out and (status is None or "status_s" in out):
            return out
        if alive is not None and not alive():
            raise RuntimeError(f"the job ended without recovering ({out})")
        time.sleep(0.02)
    raise RuntimeError(f"no recovery within {timeout}s: {out}")


def torchrun_once(work: Path, *, share_store: bool) -> dict[str, Any]:
    """The kill under plain torchrun. With `share_store` (torch's default) workers reuse the
    rendezvous store, which after a restart fails in gloo's connectFullMesh on this torch; the
    baseline figure is taken with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, as the launcher runs."""
    marks = work / f"torchrun-{uuid.uuid4().hex[:6]}"
    marks.mkdir()
    port, run_id = _free_port(), uuid.uuid4().hex[:8]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={NODES}", f"--nproc-per-node={NPROC}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={run_id}", "--max-restarts=3",
           str(SCRIPT)]  # fmt: skip
    env = {**os.environ, "MARK_DIR": str(marks), "OMP_NUM_THREADS": "1", "STEPS": str(STEPS),
           "STEP_SLEEP": str(STEP_SLEEP)}  # fmt: skip
    if not share_store:
        env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    agents = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for _ in range(NODES)]  # fmt: skip
    try:
        return _kill_and_time(marks, str(marks), alive=lambda: any(a.poll() is None for a in agents))
    except RuntimeError as exc:
        return {"error": str(exc)}
    finally:
        for a in agents:
            a.terminate()  # torchrun's agent stops its workers on SIGTERM (they run in their own sessions)
        for a in agents:
            a.wait(60)


def operator_once(op: Operator, work: Path) -> dict[str, float]:
    name = f"b2-{uuid.uuid4().hex[:6]}"
    marks = work / name
    marks.mkdir()
    op.apply(op.job(name, marks, {"STEPS": str(STEPS), "STEP_SLEEP": str(STEP_SLEEP)}))
    try:
        return _kill_and_time(marks, "/marks", status=lambda: op.status(name))
    finally:
        op.delete(name)


def run(repeats: int, op: Operator) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ej-b2-"))
    try:
        stock = torchrun_once(work, share_store=True)
        base = [torchrun_once(work, share_store=False)["recovery_s"] for _ in range(repeats)]
        ours = [operator_once(op, work) for _ in range(repeats)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    b = statistics.median(base)
    r = statistics.median(o["recovery_s"] for o in ours)
    s = statistics.median(o["status_s"] for o in ours)
    print(f"B2a torchrun {b:.2f} s, ElasticJob {r:.2f} s; B5 status {s:.2f} s", flush=True)
    return {
        "b2a": {
            "torchrun_s": round(b, 3),
            "elasticjob_s": round(r, 3),
            "ratio": round(r / b, 3),
            "runs": {"torchrun": [round(x, 3) for x in base], "elasticjob": [round(o["recovery_s"], 3) for o in ours]},
        },
        "b2a_stock_torchrun": stock,
        "b5": {"status_s": round(s, 3), "runs": [round(o["status_s"], 3) for o in ours]},
    }

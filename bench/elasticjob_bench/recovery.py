"""B1 launch, B2 recovery (three faults) and B5 status freshness, from the same jobs.

A round is one 4 x 2 job (600 steps of 50 ms per worker group) under each launcher, on the local
control plane for ElasticJob and as local processes for the torchrun baseline:
- B1: from the job's start (`kubectl apply`; the torchrun agents started) to every rank finishing
  step 1;
- then, each time every rank of the current worker group has passed step 30, one fault, and the
  recovery from it. ElasticJob's job takes all three in turn; the torchrun baseline takes B2a:
  - B2a: one worker process SIGKILLed (local rank 1 of one pod);
  - B2b: one worker pod deleted (`kubectl delete pod`, default grace);
  - B2c: the store pod force-deleted (`--grace-period=0 --force`).

Recovery is the time from the fault to every rank finishing the first step of the restarted
worker group (the step script logs each step's time per rank, from step 1 in every new
process). It is split into parts, each measured from the fault: the first and
the last new worker process started (`proc-<rank>` marks, written before `import torch`), the
process group formed on every rank (the new group's init), and the first step everywhere; for
B2b/B2c also the replacement pod created and Running (a watch on the namespace's pods).
B5 status freshness: from the B2a kill to `status.restarts.total` rising in the ElasticJob.

Baseline for B1 and B2a: plain torchrun (4 local agents, `--max-restarts 3`), in the same run,
rounds alternating. B2b and B2c have no torchrun baseline: torchrun has no pods, and its store
dies with agent 0. Limits: the local cluster's pods are host processes, so image pulls and a real
kubelet's container start are not in the figures; the faults of one job follow each other, each
at steady state (a fresh worker group past step 30), not on a fresh job.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3

from elasticjob_bench import launch
from elasticjob_bench.launch import (
    NAMESPACE,
    NODES,
    NPROC,
    SCRIPT,
    Operator,
    _free_port,
    step_times,
    wait_first_step,
)

STEPS, STEP_SLEEP, KILL_AT = 600, 0.05, 30
FAULTS = {"b2a": "worker process killed", "b2b": "worker pod deleted", "b2c": "store pod killed"}


def _worker_pid(marks: Path, rank: int = 1) -> int | None:
    """The newest training process of `rank` that is still alive, from its `pid` marks.

    (Not from /proc/<pid>/environ: a preloaded worker is forked, so that shows the forkserver's.)
    """
    try:
        lines = (marks / f"proc-{rank}").read_text().split("\n")
    except FileNotFoundError:
        return None
    pids = [int(line.split()[1]) for line in lines if line.startswith("pid ")]
    return pids[-1] if pids and Path(f"/proc/{pids[-1]}").exists() else None


def _proc_marks(marks: Path) -> dict[str, list[float]]:
    """`start`/`init` times of every worker process so far, by kind."""
    out: dict[str, list[float]] = {"start": [], "init": []}
    for f in marks.glob("proc-*"):
        for line in f.read_text().split("\n")[:-1]:
            kind, _, t = line.partition(" ")
            if kind in out and t:
                out[kind].append(float(t))
    return out


class PodWatch:
    """First time each pod (by uid) was seen after `since`, and first time it was seen Running."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        from kubernetes import client, config, watch

        self._api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))  # type: ignore[no-untyped-call]
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._namespace = namespace
        self.created: dict[str, tuple[str, float]] = {}  # uid -> (name, time first seen)
        self.running: dict[str, float] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        self._watch.stop()  # type: ignore[no-untyped-call]

    def _run(self) -> None:
        stream = self._watch.stream(  # type: ignore[no-untyped-call]
            self._api.list_namespaced_pod, self._namespace, timeout_seconds=600
        )
        try:
            for event in stream:
                pod, now = event["object"], time.time()
                self.created.setdefault(pod.metadata.uid, (pod.metadata.name, now))
                if pod.status.phase == "Running":
                    self.running.setdefault(pod.metadata.uid, now)
        except urllib3.exceptions.ProtocolError:
            if not self._stopped:  # stop() ends the stream mid-chunk; anything else is a real error
                raise

    def new_pod(self, since: float, role: str) -> tuple[float | None, float | None]:
        """(created, running) seconds after `since` of the first pod of `role` seen after it."""
        fresh = sorted((t, uid) for uid, (name, t) in self.created.items() if t > since and f"-{role}" in name)
        if not fresh:
            return None, None
        t, uid = fresh[0]
        running = self.running.get(uid)
        return t - since, None if running is None else running - since


def _wait_steady(marks: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        times = step_times(marks)
        if len(times) == NODES * NPROC and all(t and t[-1][0] >= KILL_AT for t in times.values()):
            return
        time.sleep(0.05)
    raise RuntimeError("training did not reach the fault step")


def _recovery(
    marks: Path,
    t_fault: float,
    deadline: float,
    status: Callable[[], dict[str, Any]] | None = None,
    alive: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Wait until every rank finished a step after `t_fault`; the parts of the time."""
    out: dict[str, float] = {}
    while time.monotonic() < deadline:
        if status is not None and "status_s" not in out and (status().get("restarts") or {}).get("total", 0) >= 1:
            out["status_s"] = time.time() - t_fault
        # the first step of the restarted group (the step script starts at step 1 in every new
        # process): old processes may still finish steps after a pod deletion or a store loss
        after = [[t for step, t in steps if t > t_fault and step == 1] for steps in step_times(marks).values()]
        if "recovery_s" not in out and len(after) == NODES * NPROC and all(after):
            out["recovery_s"] = max(a[0] for a in after) - t_fault
            procs = _proc_marks(marks)
            starts = sorted(t - t_fault for t in procs["start"] if t > t_fault)
            inits = sorted(t - t_fault for t in procs["init"] if t > t_fault)
            if starts:
                out["first_worker_started_s"] = starts[0]
                out["all_workers_started_s"] = starts[-1]
            if inits:
                out["process_group_formed_s"] = inits[-1]
        if "recovery_s" in out and (status is None or "status_s" in out):
            return out
        if alive is not None and not alive():
            raise RuntimeError(f"the job ended without recovering ({out})")
        time.sleep(0.02)
    raise RuntimeError(f"no recovery before the deadline: {out}")


def _agents(marks: Path, port: int, *, share_store: bool) -> list[subprocess.Popen[bytes]]:
    """4 torchrun agents on this machine running the step script; agent 0 hosts the store."""
    run_id = uuid.uuid4().hex[:8]
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={NODES}", f"--nproc-per-node={NPROC}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={run_id}", "--max-restarts=3",
           str(SCRIPT)]  # fmt: skip
    env = {**os.environ, "MARK_DIR": str(marks), "OMP_NUM_THREADS": "1", "STEPS": str(STEPS),
           "STEP_SLEEP": str(STEP_SLEEP)}  # fmt: skip
    if not share_store:
        env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
    return [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(NODES)]  # fmt: skip


def torchrun_round(work: Path, *, share_store: bool = False) -> dict[str, Any]:
    """One torchrun job: its time to step 1 (B1) and its recovery from a B2a kill.

    With `share_store` (torch's default) workers reuse the rendezvous store, which after a restart
    fails in gloo's connectFullMesh on this torch; the baseline is taken with
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, as the launcher runs."""
    marks = work / f"torchrun-{uuid.uuid4().hex[:6]}"
    marks.mkdir()
    t0 = time.time()
    agents = _agents(marks, _free_port(), share_store=share_store)
    deadline = time.monotonic() + 240
    try:
        out: dict[str, Any] = {"first_step_s": wait_first_step(marks, t0, 180)}
        _wait_steady(marks, deadline)
        t_fault = time.time()
        _kill_worker(marks)
        out["b2a"] = _recovery(marks, t_fault, deadline, alive=lambda: any(a.poll() is None for a in agents))
        return out
    except RuntimeError as exc:
        return {"error": str(exc)}
    finally:
        for a in agents:
            a.terminate()  # torchrun's agent stops its workers on SIGTERM (they run in their own sessions)
        for a in agents:
            a.wait(60)


def _kill_worker(marks: Path) -> None:
    """B2a: SIGKILL the newest training process of rank 1."""
    pid = _worker_pid(marks)
    if pid is None:
        raise RuntimeError("no worker process to kill")
    os.kill(pid, signal.SIGKILL)


def _fault(op: Operator, name: str, marks: Path, fault: str) -> None:
    if fault == "b2a":
        _kill_worker(marks)
    elif fault == "b2b":
        op.kubectl("delete", "pod", f"{name}-worker-1", "-n", NAMESPACE, "--wait=false")
    else:  # the store pod of the current generation, by its labels
        op.kubectl("delete", "pod", "-l", f"elasticjob.io/job-name={name},elasticjob.io/role=store", "-n",
                   NAMESPACE, "--grace-period=0", "--force", "--wait=false")  # fmt: skip


def operator_round(op: Operator, work: Path) -> dict[str, Any]:
    """One ElasticJob: its time to step 1 (B1), then each fault of FAULTS in turn and its recovery."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    marks = work / name
    marks.mkdir()
    docs = op.job(name, marks, {"STEPS": str(STEPS), "STEP_SLEEP": str(STEP_SLEEP)})
    t0 = time.time()
    op.apply(docs)
    deadline = time.monotonic() + 300
    try:
        with PodWatch(op.cluster.kubeconfig, NAMESPACE) as pods:
            out: dict[str, Any] = {"first_step_s": wait_first_step(marks, t0, 240)}
            for fault in FAULTS:
                _wait_steady(marks, deadline)
                t_fault = time.time()
                _fault(op, name, marks, fault)
                status = (lambda: op.status(name)) if fault == "b2a" else None
                out[fault] = _recovery(marks, t_fault, deadline, status=status)
                if fault != "b2a":
                    created, running = pods.new_pod(t_fault, "worker" if fault == "b2b" else "rdzv")
                    if created is not None:
                        out[fault]["replacement_created_s"] = created
                    if running is not None:
                        out[fault]["replacement_running_s"] = running
            return out
    finally:
        op.delete(name)


def _median(runs: list[dict[str, float]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return round(statistics.median(values), 3) if values else None


PARTS = ["replacement_created_s", "replacement_running_s", "first_worker_started_s", "all_workers_started_s",
         "process_group_formed_s", "recovery_s"]  # fmt: skip


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Medians of every part over the runs, and the runs' recovery times."""
    return {
        "elasticjob_s": _median(runs, "recovery_s"),
        "parts": {p: m for p in PARTS if (m := _median(runs, p)) is not None},
        "runs": [round(r["recovery_s"], 3) for r in runs],
    }


def run(rounds: int, op: Operator, *, stock_torchrun: bool) -> dict[str, Any]:
    """`rounds` torchrun and ElasticJob rounds, alternating: B1, B2 (with ratios for B1 and B2a)
    and B5. With `stock_torchrun`, one more torchrun round with torch's default store sharing."""
    work = Path(tempfile.mkdtemp(prefix="ej-b2-"))
    base_runs: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    try:
        stock = None
        if stock_torchrun:
            stock_round = torchrun_round(work, share_store=True)
            stock = stock_round.get("b2a") or {"error": stock_round.get("error", "no recovery")}
        for _ in range(rounds):
            base_runs.append(torchrun_round(work))
            ours.append(operator_round(op, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r["error"] for r in base_runs if "error" in r]
    if failed:
        raise RuntimeError(f"the torchrun baseline did not recover: {failed}")
    results: dict[str, Any] = {"b1": launch.summarize([r["first_step_s"] for r in base_runs],
                                                      [r["first_step_s"] for r in ours])}  # fmt: skip
    if stock is not None:
        results["b2a_stock_torchrun"] = stock
    for fault, what in FAULTS.items():
        results[fault] = {"fault": what, **summarize([r[fault] for r in ours])}
    b2a = results["b2a"]
    base = summarize([r["b2a"] for r in base_runs])
    b2a.update(torchrun_s=base["elasticjob_s"], torchrun_parts=base["parts"], torchrun_runs=base["runs"])
    b2a["ratio"] = round(b2a["elasticjob_s"] / b2a["torchrun_s"], 3)
    status = [r["b2a"]["status_s"] for r in ours]
    results["b5"] = {"status_s": round(statistics.median(status), 3), "runs": [round(s, 3) for s in status]}
    ours_s = ", ".join(f"{f} {results[f]['elasticjob_s']} s" for f in FAULTS)
    print(
        f"B2 torchrun {b2a['torchrun_s']} s; ElasticJob {ours_s}; B5 status {results['b5']['status_s']} s", flush=True
    )
    return results

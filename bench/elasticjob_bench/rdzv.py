"""B3: how long N agents take to join one rendezvous, and the store traffic each join causes.

Agents are threads, 8 per process (as in the probes the issue cites), in a pool of processes
that import torch once and serve every trial; each agent keeps its store connections across
trials, as a job's agents keep theirs across rounds (`rdzv_agents`). A trial starts when all its
agents hold their connections and ends when the last one has its rank. The store is the
project's own (`elasticjob-launch store`, a dedicated process).

Variants, measured in the same run:
- `stock`: torch's DynamicRendezvousHandler over the c10d backend with its defaults; the baseline.
- `cas-backoff`: the same with `cas_backoff_max_seconds` (torch >= 2.10), a random pause after a
  failed compare-and-set, which spreads the retries that make joins quadratic.
- `elasticjob`: the launcher's own handler (`--rdzv-backend elasticjob`,
  `elasticjob_launcher.rendezvous`): a join is an `add` for a slot, a `set` of its id and a `wait`
  for the member list that the last arrival writes once (plus one keep-alive `set`); the state
  traffic columns count torch's state blob and do not apply to it.

Limits: all agents share this machine's cores with the store, as in the probes; a trial that
does not finish within the join timeout is reported as such (no figure) and the larger sizes of
that variant are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from torch.distributed import TCPStore

PER_PROCESS = 8
TRAFFIC = ("state_reads_per_join", "cas_writes_per_join", "failed_cas_per_join", "state_bytes_per_join")
VARIANTS: dict[str, dict[str, Any]] = {
    "stock": {},
    "cas-backoff": {"cas_backoff": 0.5},
    "elasticjob": {"handler": "elasticjob"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_name(process: int, agent: int) -> str:
    """The name of a process's agent: the same in every trial, so it keeps its connections."""
    return f"p{process}-{agent}"


@dataclass
class Pool:
    """Agent processes (`rdzv_agents`), each serving trials one after another.

    Each process's stderr goes to a log file in `logs`, quoted when the process dies. A process
    whose agents did not all report may still run them, which would load the store during the
    next trial: `renew` replaces it.
    """

    port: int
    logs: Path
    connections: int
    procs: list[subprocess.Popen[str]]

    @classmethod
    def start(cls, size: int, port: int, connections: int = 2) -> Pool:
        """`size` processes, each with `connections` store connections open for each of its agents."""
        pool = cls(port, Path(tempfile.mkdtemp(prefix="ej-b3-")), connections, [])
        pool.procs = [pool._spawn(i) for i in range(size)]
        for i in range(size):
            pool.read(i)
        return pool

    def _spawn(self, index: int) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "elasticjob_bench.rdzv_agents", "127.0.0.1", str(self.port),
               str(index), str(PER_PROCESS), str(self.connections)]  # fmt: skip
        env = {**os.environ, "LOGLEVEL": "ERROR"}
        with (self.logs / f"agents-{index}.log").open("a") as log:
            return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env)

    def send(self, index: int, cmd: dict[str, Any]) -> None:
        stdin = self.procs[index].stdin
        if stdin is None:
            raise RuntimeError("no pipe")
        try:
            stdin.write(json.dumps(cmd) + "\n")
            stdin.flush()
        except BrokenPipeError:
            raise self._died(index) from None

    def read(self, index: int) -> dict[str, Any]:
        """The next JSON line of process `index`."""
        stream = self.procs[index].stdout
        line = stream.readline() if stream else ""
        if not line:
            raise self._died(index)
        return dict(json.loads(line))

    def _died(self, index: int) -> RuntimeError:
        tail = (self.logs / f"agents-{index}.log").read_text()[-2000:]
        return RuntimeError(f"rendezvous agent process {index} died; the end of its log:\n{tail}")

    def renew(self, indices: list[int]) -> None:
        """Replace processes `indices` with fresh ones (started together, then waited for)."""
        for i in indices:
            self._end(self.procs[i], wait=0)
            self.procs[i] = self._spawn(i)
        for i in indices:
            self.read(i)

    @staticmethod
    def _end(proc: subprocess.Popen[str], wait: float) -> None:
        if proc.stdin:
            with contextlib.suppress(BrokenPipeError):  # it died with a command unread
                proc.stdin.close()
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:  # agents of a trial that never finished may hang on
            proc.kill()
            proc.wait(30)

    def stop(self) -> None:
        for p in self.procs:
            if p.stdin:
                with contextlib.suppress(BrokenPipeError):
                    p.stdin.close()
        for p in self.procs:
            self._end(p, wait=30)
        shutil.rmtree(self.logs, ignore_errors=True)


def trial(pool: Pool, store: TCPStore, nodes: int, timeout: float, options: dict[str, Any]) -> dict[str, Any]:
    """One rendezvous of `nodes` agents, spread over the fewest processes; processes whose agents
    did not all report (threads still hanging in a join) are renewed."""
    run_id = f"b3-{uuid.uuid4().hex[:8]}"
    used = range((nodes + PER_PROCESS - 1) // PER_PROCESS)
    # the same names in the same process every trial, so each agent's store connections are kept
    agents = {i: [agent_name(i, j) for j in range(nodes // len(used) + (i < nodes % len(used)))] for i in used}
    for i in used:
        pool.send(i, {"run_id": run_id, "agents": agents[i], "nodes": nodes, "timeout": timeout, **options})
    for i in used:  # every agent holds its store connections and waits for the go key
        pool.read(i)
    t0 = time.time()
    store.set(f"go/{run_id}", "1")
    reports = {i: pool.read(i)["results"] for i in used}
    hung = [i for i in used if len(reports[i]) < len(agents[i])]
    if hung:
        pool.renew(hung)
    records = [r for i in used for r in reports[i]]
    failed = [r for r in records if "error" in r]
    ok = not failed and len(records) == nodes
    return {
        "nodes": nodes,
        "ok": ok,
        "seconds": round(max(r["end"] for r in records) - t0, 3) if ok else None,
        "error": failed[0]["error"] if failed else (None if ok else f"{len(records)} of {nodes} reported"),
        **_traffic(records),
    }


def _traffic(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per join: state blob reads, compare-and-set writes (and failed ones), bytes (c10d only)."""
    if not records or "gets" not in records[0]:
        return dict.fromkeys(TRAFFIC)
    joins = len(records)
    return {
        "state_reads_per_join": round(sum(r["gets"] for r in records) / joins, 1),
        "cas_writes_per_join": round(sum(r["sets"] for r in records) / joins, 1),
        "failed_cas_per_join": round(sum(r["failed_sets"] for r in records) / joins, 1),
        "state_bytes_per_join": int(sum(r["bytes"] for r in records) / joins),
    }


def start_store() -> tuple[int, subprocess.Popen[bytes]]:
    """The project's store (`elasticjob-launch store`) as a process on a free port."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "elasticjob_launcher.cli", "store", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return port, server


def _median_or_none(values: list[Any]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def run(sizes: dict[str, list[int]], repeats: int, timeout: float) -> dict[str, Any]:
    """Median join time per variant and size (`sizes`: variant -> sizes), with the traffic per
    join; ratios against `stock`."""
    port, server = start_store()
    try:
        store = TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
        largest = max(n for ns in sizes.values() for n in ns)
        pool = Pool.start((largest + PER_PROCESS - 1) // PER_PROCESS, port)
        rows: list[dict[str, Any]] = []
        try:
            for variant, options in VARIANTS.items():
                for nodes in sizes.get(variant, []):
                    trials: list[dict[str, Any]] = []
                    while len(trials) < repeats and all(t["ok"] for t in trials):
                        trials.append(trial(pool, store, nodes, timeout, options))  # a timeout is not repeated
                    good = [t["seconds"] for t in trials if t["ok"]]
                    row = {
                        "variant": variant,
                        "nodes": nodes,
                        "runs": len(trials),
                        "finished": len(good),
                        "median_s": round(statistics.median(good), 3) if good else None,
                        **{k: _median_or_none([t[k] for t in trials]) for k in TRAFFIC},
                        "errors": sorted({t["error"] for t in trials if t["error"]}),
                    }
                    rows.append(row)
                    print(f"B3 {variant} {nodes} agents: {row['median_s']} s "
                          f"({row['finished']}/{row['runs']} finished)", flush=True)  # fmt: skip
                    if len(good) < len(trials):
                        break  # larger sizes of this variant would not finish either
        finally:
            pool.stop()
    finally:
        server.terminate()
        server.wait(30)
    base = {r["nodes"]: r["median_s"] for r in rows if r["variant"] == "stock"}
    for r in rows:
        b = base.get(r["nodes"])
        r["ratio_vs_stock"] = round(r["median_s"] / b, 3) if r["median_s"] and b else None
    return {"rows": rows, "per_process": PER_PROCESS, "timeout_s": timeout, "repeats": repeats, "sizes": sizes}

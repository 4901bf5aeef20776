"""B3: how long N agents take to join one rendezvous, and the store traffic each join causes.

Agents are threads, 8 per process (as in the probes the issue cites), in a pool of processes
that import torch once and serve every trial; a trial starts when all its agents hold a store
connection and ends when the last one has its rank. The store is the project's own
(`elasticjob-launch store`, a dedicated process).

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

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any

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


@dataclass
class Pool:
    procs: list[subprocess.Popen[str]]

    @classmethod
    def start(cls, size: int, port: int) -> Pool:
        cmd = [sys.executable, "-m", "elasticjob_bench.rdzv_agents", "127.0.0.1", str(port)]
        env = {**os.environ, "LOGLEVEL": "ERROR"}
        procs = [
            subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
            )
            for _ in range(size)
        ]
        for p in procs:
            _read(p.stdout)
        return cls(procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.stdin:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:  # agents of a trial that never finished may hang on
                p.kill()
                p.wait(30)


def _read(stream: IO[str] | None) -> dict[str, Any]:
    if stream is None:
        raise RuntimeError("no pipe")
    line = stream.readline()
    if not line:
        raise RuntimeError("a rendezvous agent process died")
    return dict(json.loads(line))


def trial(pool: Pool, store: TCPStore, nodes: int, timeout: float, options: dict[str, Any]) -> dict[str, Any]:
    run_id = f"b3-{uuid.uuid4().hex[:8]}"
    used = pool.procs[: (nodes + PER_PROCESS - 1) // PER_PROCESS]
    for i, proc in enumerate(used):
        agents = [f"agent-{n}" for n in range(i, nodes, len(used))]
        cmd = {"run_id": run_id, "agents": agents, "nodes": nodes, "timeout": timeout, **options}
        if proc.stdin is None:
            raise RuntimeError("no pipe")
        proc.stdin.write(json.dumps(cmd) + "\n")
        proc.stdin.flush()
    for proc in used:  # every agent holds its store connections and waits for the go key
        _read(proc.stdout)
    t0 = time.time()
    store.set(f"go/{run_id}", "1")
    records = [r for proc in used for r in _read(proc.stdout)["results"]]
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


def run(sizes: list[int], repeats: int, timeout: float, variants: list[str] | None = None) -> dict[str, Any]:
    """Median join time per size and variant, with the traffic per join; ratios against `stock`."""
    port, server = start_store()
    try:
        store = TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
        pool = Pool.start((max(sizes) + PER_PROCESS - 1) // PER_PROCESS, port)
        rows: list[dict[str, Any]] = []
        try:
            for variant, options in VARIANTS.items():
                if variants is not None and variant not in variants:
                    continue
                for nodes in sizes:
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
    return {"rows": rows, "per_process": PER_PROCESS, "timeout_s": timeout, "repeats": repeats}

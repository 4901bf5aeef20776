"""B5b: the store's round-trip throughput and latency under a rendezvous.

16 client processes (one connection each) run `add` round-trips against the project's store
(`elasticjob-launch store`) for a fixed window, recording each call's latency. Baseline: the
same clients on an otherwise idle store, in the same run. Loaded: the same window while 64
agents rendezvous over and over, back to back (B3's pool of agent threads), once with torch's
c10d handler and once with the launcher's own. Each agent keeps its store connections across
rendezvous (a fresh run id per rendezvous), as a job's agents do, and every connection is open
before the first window: opening 64-128 connections per rendezvous would make the window measure
the store accepting connections, not rendezvous traffic. Reported: total ops/s, p50/p99 latency,
and the ratios against the idle store.

Client mode (used by the benchmark): `python -m elasticjob_bench.store_load HOST PORT SECONDS`
prints one JSON list of latencies in seconds. Limits: clients and agents share this machine's
cores with the store, so the figures measure the whole machine, as a job's pods on one node
would; Python's per-call overhead is in every latency.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

CLIENTS, WINDOW, AGENTS = 16, 10.0, 64


def client(host: str, port: int, seconds: float) -> list[float]:
    from torch.distributed import TCPStore

    store = TCPStore(host, port, is_master=False, timeout=timedelta(seconds=60))
    store.add("b5b/ready", 1)
    store.wait(["b5b/go"])
    key, out = f"b5b/{id(store)}", []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        store.add(key, 1)
        out.append(time.perf_counter() - t)
    return out


def _window(port: int) -> tuple[dict[str, float], float]:
    """One measurement window of CLIENTS processes: their ops/s and latency percentiles, and the
    window's start (time.monotonic())."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
    store.delete_key("b5b/go")
    store.delete_key("b5b/ready")
    cmd = [sys.executable, "-m", "elasticjob_bench.store_load", "127.0.0.1", str(port), str(WINDOW)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(CLIENTS)]
    deadline = time.monotonic() + 120
    while store.add("b5b/ready", 0) < CLIENTS:  # every client imported torch and connected
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("the store clients did not all connect")
        time.sleep(0.2)
    start = time.monotonic()
    store.set("b5b/go", "1")
    lat = sorted(x for p in procs for x in json.loads(p.communicate(timeout=WINDOW + 120)[0]))
    if not lat:
        raise RuntimeError("the store clients made no calls")
    row = {
        "ops_per_s": round(len(lat) / WINDOW),
        "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 3),
    }
    return row, start


def run(repeats: int = 3) -> dict[str, Any]:
    from elasticjob_bench import rdzv

    port, server = rdzv.start_store()
    try:
        from torch.distributed import TCPStore

        store = TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
        pool = rdzv.Pool.start(AGENTS // rdzv.PER_PROCESS, port)
        variants = {v: {**rdzv.VARIANTS[v], "keep_connections": True} for v in ("stock", "elasticjob")}
        try:
            for options in variants.values():  # open every agent's connections, outside any window
                rdzv.trial(pool, store, AGENTS, 60, options)
            rows = {"idle": [_window(port)[0] for _ in range(repeats)]}
            for variant, options in variants.items():
                rows[variant] = []
                for _ in range(repeats):
                    stop = threading.Event()
                    ended: list[float] = []  # when each completed rendezvous ended (time.monotonic())

                    def churn(
                        options: dict[str, Any] = options, stop: threading.Event = stop, ended: list[float] = ended
                    ) -> None:
                        while not stop.is_set():
                            if rdzv.trial(pool, store, AGENTS, 60, options)["ok"]:
                                ended.append(time.monotonic())

                    th = threading.Thread(target=churn)
                    th.start()
                    row, start = _window(port)
                    stop.set()
                    th.join(120)
                    done = sum(start <= t <= start + WINDOW for t in ended)
                    rows[variant].append({**row, "rendezvous_completed": done})
        finally:
            pool.stop()
    finally:
        server.terminate()
        server.wait(30)

    def med(rs: list[dict[str, float]], k: str) -> float:
        return float(statistics.median(r[k] for r in rs))

    idle = {k: med(rows["idle"], k) for k in ("ops_per_s", "p50_ms", "p99_ms")}
    out: dict[str, Any] = {"clients": CLIENTS, "window_s": WINDOW, "agents": AGENTS, "idle": idle}
    for variant in ("stock", "elasticjob"):
        m = {k: med(rows[variant], k) for k in ("ops_per_s", "p50_ms", "p99_ms")}
        m["ops_ratio_vs_idle"] = round(m["ops_per_s"] / idle["ops_per_s"], 3)
        m["p99_ratio_vs_idle"] = round(m["p99_ms"] / idle["p99_ms"], 3)
        m["rendezvous_per_window"] = med(rows[variant], "rendezvous_completed")
        out[f"during_{variant}"] = m
    print(f"B5b {json.dumps(out)}", flush=True)
    return out


if __name__ == "__main__":
    host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(client(host, port, seconds)))

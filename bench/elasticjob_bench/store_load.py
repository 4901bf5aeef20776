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

The client processes start once and serve every window (`python -m elasticjob_bench.store_load
HOST PORT SECONDS`: for each window id read on stdin, one JSON list of latencies in seconds on
stdout), so a window measures round-trips, not 16 torch imports. Limits: clients and agents share this machine's
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


def client(host: str, port: int, seconds: float) -> None:
    """Client mode: one connection; for each window id on stdin, `add` round-trips for `seconds`
    once the window's go key appears, then one JSON line of their latencies."""
    from torch.distributed import TCPStore

    store = TCPStore(host, port, is_master=False, timeout=timedelta(seconds=60))
    key = f"b5b/{id(store)}"
    print("[]", flush=True)  # connected
    for line in sys.stdin:
        window = line.strip()
        store.add(f"b5b/ready/{window}", 1)
        store.wait([f"b5b/go/{window}"])
        out = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            store.add(key, 1)
            out.append(time.perf_counter() - t)
        print(json.dumps(out), flush=True)


class Clients:
    """CLIENTS client processes, started once, each holding one store connection."""

    def __init__(self, port: int) -> None:
        from torch.distributed import TCPStore

        self.store = TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
        cmd = [sys.executable, "-m", "elasticjob_bench.store_load", "127.0.0.1", str(port), str(WINDOW)]
        self.procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                      for _ in range(CLIENTS)]  # fmt: skip
        for p in self.procs:
            self._line(p)
        self.windows = 0

    @staticmethod
    def _line(p: subprocess.Popen[str]) -> list[float]:
        line = p.stdout.readline() if p.stdout else ""
        if not line:
            raise RuntimeError("a store client process died")
        return [float(x) for x in json.loads(line)]

    def window(self) -> tuple[dict[str, float], float]:
        """One measurement window: the clients' ops/s and latency percentiles, and the window's
        start (time.monotonic())."""
        self.windows += 1
        window = str(self.windows)
        for p in self.procs:
            if p.stdin is None:
                raise RuntimeError("no pipe")
            p.stdin.write(window + "\n")
            p.stdin.flush()
        deadline = time.monotonic() + 120
        while self.store.add(f"b5b/ready/{window}", 0) < CLIENTS:
            if time.monotonic() > deadline:
                raise RuntimeError("the store clients did not all get ready")
            time.sleep(0.05)
        start = time.monotonic()
        self.store.set(f"b5b/go/{window}", "1")
        lat = sorted(x for p in self.procs for x in self._line(p))
        if not lat:
            raise RuntimeError("the store clients made no calls")
        row = {
            "ops_per_s": round(len(lat) / WINDOW),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 3),
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 3),
        }
        return row, start

    def stop(self) -> None:
        for p in self.procs:
            if p.stdin:
                p.stdin.close()
        for p in self.procs:
            p.wait(30)


def run(repeats: int = 3) -> dict[str, Any]:
    from elasticjob_bench import rdzv

    port, server = rdzv.start_store()
    try:
        from torch.distributed import TCPStore

        store = TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
        pool = rdzv.Pool.start(AGENTS // rdzv.PER_PROCESS, port)
        clients = Clients(port)
        variants = {v: rdzv.VARIANTS[v] for v in ("stock", "elasticjob")}
        try:
            # one rendezvous of each handler before any window (the pool opened the connections)
            for options in variants.values():
                rdzv.trial(pool, store, AGENTS, 60, options)
            rows = {"idle": [clients.window()[0] for _ in range(repeats)]}
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
                    row, start = clients.window()
                    stop.set()
                    th.join(120)
                    done = sum(start <= t <= start + WINDOW for t in ended)
                    rows[variant].append({**row, "rendezvous_completed": done})
        finally:
            clients.stop()
            pool.stop()
    finally:
        server.terminate()
        server.wait(30)

    def med(rs: list[dict[str, float]], k: str) -> float:
        return round(float(statistics.median(r[k] for r in rs)), 3)

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
    client(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))

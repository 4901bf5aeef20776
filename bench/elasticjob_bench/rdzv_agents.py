"""B3 helper process: hosts several rendezvous agents as threads and reports their join times.

Run by `elasticjob_bench.rdzv` as `python -m elasticjob_bench.rdzv_agents HOST PORT`; it reads one
JSON command per line on stdin (`{"run_id", "agents": [names], "nodes": N, "timeout": s,
"cas_backoff": s, "handler": "c10d" | "elasticjob", "keep_connections": bool}`), lets every agent
join the run's rendezvous once the store key `go/<run_id>` appears, and prints one JSON line with
each agent's start/end times and, for c10d, the rendezvous state traffic it caused (calls and
bytes of get_state/set_state). Torch is imported once per process, so a trial measures joining,
not interpreter start-up. Agents open fresh store connections every trial (B3) unless
`keep_connections` is set (B5b): then each agent name keeps its connections (requests and
keep-alives; c10d uses the first) for the life of the process and only the handler, bound to the
trial's run id, is new, so a stream of trials does not keep the store accepting connections.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import timedelta
from typing import Any

os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")

from elasticjob_launcher.rendezvous import StoreRendezvousHandler
from torch.distributed import TCPStore
from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import C10dRendezvousBackend
from torch.distributed.elastic.rendezvous.dynamic_rendezvous import (
    DynamicRendezvousHandler,
    RendezvousTimeout,
)

_KEPT: dict[str, list[TCPStore]] = {}  # agent name -> its store connections (keep_connections)
_KEPT_LOCK = threading.Lock()


def _connections(host: str, port: int, cmd: dict[str, Any], name: str, count: int) -> list[TCPStore]:
    """The agent's first `count` store connections: fresh, or (keep_connections) kept across trials."""
    timeout = timedelta(seconds=cmd["timeout"])
    if not cmd.get("keep_connections"):
        return [TCPStore(host, port, is_master=False, timeout=timeout) for _ in range(count)]
    with _KEPT_LOCK:  # each name belongs to one agent thread per trial; the lock guards the dict
        kept = _KEPT.setdefault(name, [])
    while len(kept) < count:
        kept.append(TCPStore(host, port, is_master=False, timeout=timeout))
    return kept[:count]


class CountingBackend(C10dRendezvousBackend):
    """The stock c10d backend, counting the state reads and compare-and-set writes it makes."""

    def __init__(self, store: TCPStore, run_id: str) -> None:
        super().__init__(store, run_id)
        self.gets = self.sets = self.failed_sets = self.bytes = 0

    def get_state(self) -> Any:
        result = super().get_state()
        self.gets += 1
        self.bytes += len(result[0]) if result else 0
        return result

    def set_state(self, state: bytes, token: Any = None) -> Any:
        result = super().set_state(state, token)
        self.sets += 1
        self.bytes += len(state) + (len(result[0]) if result else 0)
        if result is not None and not result[2]:
            self.failed_sets += 1
        return result


def _timed_join(
    handler: Any, store: TCPStore, cmd: dict[str, Any], name: str, connected: threading.Barrier
) -> dict[str, Any]:
    """Wait for every agent to be connected and for the go key, then time one join."""
    connected.wait()
    store.wait([f"go/{cmd['run_id']}"])
    record: dict[str, Any] = {"agent": name, "start": time.time()}
    try:
        info = handler.next_rendezvous()
        record.update(end=time.time(), rank=info.rank, world=info.world_size)
    except Exception as exc:  # a failed join is a result to report
        record.update(end=time.time(), error=f"{type(exc).__name__}: {exc}"[:300])
    return record


def join_ours(
    host: str, port: int, cmd: dict[str, Any], name: str, out: list[dict[str, Any]], connected: threading.Barrier
) -> None:
    """One agent of the project's handler (two store connections: requests and keep-alives)."""
    store, beats = _connections(host, port, cmd, name, 2)
    handler = StoreRendezvousHandler(
        cmd["run_id"], store, beats, min_nodes=cmd["nodes"], max_nodes=cmd["nodes"], local_addr=name,
        join_timeout=cmd["timeout"], last_call_timeout=1,
    )  # fmt: skip
    record = _timed_join(handler, store, cmd, name, connected)
    handler.leave()
    out.append(record)


def join(
    host: str, port: int, cmd: dict[str, Any], name: str, out: list[dict[str, Any]], connected: threading.Barrier
) -> None:
    if cmd.get("handler") == "elasticjob":
        join_ours(host, port, cmd, name, out, connected)
        return
    run_id, nodes = cmd["run_id"], cmd["nodes"]
    (store,) = _connections(host, port, cmd, name, 1)
    backend = CountingBackend(store, run_id)
    handler = DynamicRendezvousHandler.from_backend(
        run_id, store, backend, min_nodes=nodes, max_nodes=nodes, local_addr=name,
        timeout=RendezvousTimeout(join=timedelta(seconds=cmd["timeout"]), last_call=timedelta(seconds=1)),
        cas_backoff_max_seconds=cmd.get("cas_backoff", 0.0),
    )  # fmt: skip
    record = _timed_join(handler, store, cmd, name, connected)
    handler._stop_heartbeats()  # the next trial must not hear this one's keep-alives
    record.update(gets=backend.gets, sets=backend.sets, failed_sets=backend.failed_sets, bytes=backend.bytes)
    out.append(record)


def main(argv: list[str] | None = None) -> int:
    host, port = (argv or sys.argv[1:])[:2]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        results: list[dict[str, Any]] = []
        # every agent holds its store connections before the trial starts: dozens of connections
        # opened at once take seconds to be accepted, which is not the rendezvous' doing
        connected = threading.Barrier(len(cmd["agents"]) + 1)
        threads = [
            threading.Thread(target=join, args=(host, int(port), cmd, name, results, connected), daemon=True)
            for name in cmd["agents"]
        ]
        for t in threads:
            t.start()
        connected.wait(cmd["timeout"])
        print(json.dumps({"connected": True}), flush=True)
        for t in threads:
            t.join(cmd["timeout"] + 30)
        print(json.dumps({"results": results}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""B3 helper process: hosts several rendezvous agents as threads and reports their join times.

Run by `elasticjob_bench.rdzv` as `python -m elasticjob_bench.rdzv_agents HOST PORT`; it reads one
JSON command per line on stdin (`{"run_id", "agents": [names], "nodes": N, "timeout": s,
"cas_backoff": s, "handler": "c10d" | "elasticjob"}`), lets every agent join the run's rendezvous
once the store key `go/<run_id>` appears, and prints one JSON line with each agent's start/end
times (or its error) and, for c10d, the rendezvous state traffic it caused (calls and bytes of
get_state/set_state). Torch is imported once per process, so a trial measures joining, not
interpreter start-up.

Each agent name keeps its store connections (requests and keep-alives; c10d uses the first) for
the life of the process, and only the handler, bound to the trial's run id, is new, as a job's
agents keep theirs across rendezvous rounds. Opening connections is not part of any figure: on
this machine's sandboxed network stack about one TCPStore connect in 12-25 stalls for 5 s (plain
sockets do not), so opening them every trial would measure that, and a stream of trials (B5b)
would keep the store accepting connections.
"""

from __future__ import annotations

import contextlib
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

from elasticjob_bench.rdzv import agent_name

#: seconds to open a store connection, and for every agent of a trial to hold its connections
CONNECT_TIMEOUT = 300.0
_KEPT: dict[str, list[TCPStore]] = {}  # agent name -> its store connections
_KEPT_LOCK = threading.Lock()


def _connections(host: str, port: int, name: str, count: int) -> list[TCPStore]:
    """The agent's first `count` store connections, opened on first use and kept across trials."""
    with _KEPT_LOCK:  # each name belongs to one agent thread per trial; the lock guards the dict
        kept = _KEPT.setdefault(name, [])
    while len(kept) < count:
        kept.append(TCPStore(host, port, is_master=False, timeout=timedelta(seconds=CONNECT_TIMEOUT)))
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
    store, beats = _connections(host, port, name, 2)
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
    """One agent's join, its failure to connect or to join reported as a result."""
    try:
        if cmd.get("handler") == "elasticjob":
            join_ours(host, port, cmd, name, out, connected)
        else:
            join_c10d(host, port, cmd, name, out, connected)
    except Exception as exc:  # e.g. no store connection: the trial fails, the process serves the next
        connected.abort()  # the others stop waiting for this agent
        out.append({"agent": name, "end": time.time(), "error": f"{type(exc).__name__}: {exc}"[:300]})


def join_c10d(
    host: str, port: int, cmd: dict[str, Any], name: str, out: list[dict[str, Any]], connected: threading.Barrier
) -> None:
    """One agent of torch's DynamicRendezvousHandler over the c10d backend, counting its traffic."""
    run_id, nodes = cmd["run_id"], cmd["nodes"]
    (store,) = _connections(host, port, name, 1)
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
    """HOST PORT [INDEX AGENTS CONNECTIONS]: with the last three, open `CONNECTIONS` store
    connections for each of this process's first `AGENTS` agents before reporting ready (while
    other processes still import torch: the connect stalls overlap their imports)."""
    args = argv or sys.argv[1:]
    host, port = args[0], int(args[1])
    if len(args) == 5:
        index, agents, count = (int(a) for a in args[2:])
        opening = [
            threading.Thread(target=_connections, args=(host, port, agent_name(index, j), count)) for j in range(agents)
        ]
        for t in opening:
            t.start()
        for t in opening:
            t.join()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        results: list[dict[str, Any]] = []
        # every agent holds its store connections before the trial starts: dozens of connections
        # opened at once take seconds to be accepted, which is not the rendezvous' doing
        connected = threading.Barrier(len(cmd["agents"]) + 1)
        threads = [
            threading.Thread(target=join, args=(host, port, cmd, name, results, connected), daemon=True)
            for name in cmd["agents"]
        ]
        for t in threads:
            t.start()
        # broken when an agent could not connect (its error is among the results) or connecting timed out
        with contextlib.suppress(threading.BrokenBarrierError):
            connected.wait(CONNECT_TIMEOUT)
        print(json.dumps({"connected": True}), flush=True)
        deadline = time.monotonic() + cmd["timeout"] + 30  # one deadline for all: joins run in parallel
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        print(json.dumps({"results": list(results)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A rendezvous handler whose join costs O(1) store round-trips (`--rdzv-backend elasticjob`).

Why: torch's c10d rendezvous keeps the whole rendezvous state in one pickled blob that every
joining node rewrites with compare-and-set; at 64+ nodes most writes fail and are retried, so a
rendezvous takes seconds to minutes (docs/benchmarks.md, B3). Here a node joins round `r` by:

1. `add(r/count, 1)`: its arrival slot (one round-trip; slots >= max_nodes try round r+1);
2. `set(r/node/<slot>, id)`;
3. `wait(r/members)`: the round's member list, written once by whichever node seals the round.

A round is sealed by the node taking the last slot (max_nodes), or, once min_nodes have arrived,
by the first member whose last-call timer runs out, with `compare_set` so exactly one member list
wins. The sealer keeps only nodes whose keep-alive (`hb/<id>`, refreshed every
`keep_alive_interval` by a thread on a second store connection) is fresh, so a node that died
while the round formed is not waited for. Ranks are positions in the member list. Nodes that
arrive after the seal queue in round r+1; members see them through `num_nodes_waiting()` (only if
the running round has room, or one of its members is gone, so a full job never restarts for a
spare but does for a replacement).

Same settings as torch's c10d handler: join_timeout (600 s), last_call_timeout (30 s),
keep_alive_interval (5 s) and keep_alive_max_attempt (3), or heartbeat_timeout (a node is dead
once its keep-alive is that old; default interval * attempts). Workers get a fresh bootstrap store
hosted by rank 0 every round (torch's TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 behaviour).

Limits: keep-alives compare wall clocks across nodes (as torch's handler does), so clocks must
agree to well within keep_alive_interval * keep_alive_max_attempt; a round's keys stay in the
store until the store is replaced.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from torch.distributed import DistStoreError, PrefixStore, Store
from torch.distributed.elastic.rendezvous import (
    RendezvousClosedError,
    RendezvousConnectionError,
    RendezvousHandler,
    RendezvousInfo,
    RendezvousParameters,
    RendezvousStoreInfo,
    RendezvousTimeoutError,
)
from torch.distributed.elastic.rendezvous import (
    rendezvous_handler_registry as handler_registry,
)

BACKEND = "elasticjob"
_TOO_FEW = "-"  # a member list meaning: fewer than min_nodes were alive at the seal, start over
_CLOSED = "!"  # a member list meaning: the rendezvous was closed while the round formed


class StoreRendezvousHandler(RendezvousHandler):
    """Join rounds through per-round counters and one member list (see the module docstring)."""

    def __init__(
        self,
        run_id: str,
        store: Store,
        keep_alive_store: Store,
        *,
        min_nodes: int,
        max_nodes: int,
        local_addr: str | None = None,
        join_timeout: float = 600.0,
        last_call_timeout: float = 30.0,
        keep_alive_interval: float = 5.0,
        keep_alive_max_attempt: int = 3,
        heartbeat_timeout: float | None = None,
    ) -> None:
        if not 1 <= min_nodes <= max_nodes:
            raise ValueError(f"need 1 <= min_nodes <= max_nodes, got {min_nodes}:{max_nodes}")
        self.run_id = run_id
        self._root = store
        self._kv = PrefixStore(f"elasticjob.rdzv.{run_id}", store)
        self._hb_kv = PrefixStore(f"elasticjob.rdzv.{run_id}", keep_alive_store)
        self.min_nodes, self.max_nodes = min_nodes, max_nodes
        self.local_addr = local_addr
        self.join_timeout, self.last_call_timeout = join_timeout, last_call_timeout
        self.stale_after = heartbeat_timeout or keep_alive_interval * keep_alive_max_attempt
        self.keep_alive_interval = min(keep_alive_interval, self.stale_after / 3)
        self.node_id = f"{local_addr or socket.getfqdn()}_{uuid.uuid4().hex[:8]}"
        self.round = 0  # the last round joined (0: none yet)
        self.world_size = 0
        self.rank = 0
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    # -- RendezvousHandler --------------------------------------------------------------------

    def get_backend(self) -> str:
        return BACKEND

    @property
    def use_agent_store(self) -> bool:
        return False  # workers get a fresh store hosted by rank 0 every round

    def next_rendezvous(self) -> RendezvousInfo:
        deadline = time.monotonic() + self.join_timeout
        self._beat()
        self._start_heartbeats()
        target = max(self.round, self._int("sealed_round")) + 1
        while True:
            self._raise_if_closed()
            slot = int(self._kv.add(f"{target}/count", 1)) - 1
            if slot >= self.max_nodes:
                target += 1  # the round is full: queue for the next one
                continue
            self._kv.set(f"{target}/node/{slot}", self.node_id)
            if slot == self.max_nodes - 1:  # the round is full: nothing better can come
                self._seal(target, self.max_nodes, wait_for_previous=False)
            members = self._await_members(target, slot, deadline)
            if self.node_id not in members:
                target += 1  # sealed without this node (it arrived late): queue for the next round
                continue
            return self._joined(target, members)

    def is_closed(self) -> bool:
        return bool(self._kv.check(["closed"]))

    def set_closed(self) -> None:
        self._kv.set("closed", "1")
        forming = self._int("sealed_round") + 1
        for r in (forming, forming + 1):  # wake the nodes waiting in a round that will never form
            self._kv.compare_set(f"{r}/members", "", _CLOSED)

    def num_nodes_waiting(self) -> int:
        """Nodes queued for the next round, if the running round has room for them: a free
        place, or a member that is gone (it left, or its keep-alive went stale), as when a pod
        is replaced while its peers still run. A full round of live members never restarts for
        a spare."""
        if not self.round:
            return 0
        waiting = self._int(f"{self.round + 1}/count")
        if not waiting or self.world_size < self.max_nodes:
            return waiting
        others = [n for n in self._kv.get(f"{self.round}/members").decode().split(",") if n != self.node_id]
        return waiting if self._stale(others) else 0

    def get_run_id(self) -> str:
        return self.run_id

    def shutdown(self) -> bool:
        try:
            self.leave()
            self.set_closed()
        except RuntimeError:
            return False
        return True

    def leave(self) -> None:
        """Stop the keep-alives and mark this node gone at once (a drain, the job's end), so no
        round waits for it."""
        self._stop.set()
        self._hb_kv.set(f"hb/{self.node_id}", "0")

    # -- internals ----------------------------------------------------------------------------

    def _int(self, key: str) -> int:
        return int(self._kv.add(key, 0))

    def _raise_if_closed(self) -> None:
        if self.is_closed():
            raise RendezvousClosedError

    def _beat(self) -> None:
        self._hb_kv.set(f"hb/{self.node_id}", repr(time.time()))

    def _start_heartbeats(self) -> None:
        if self._beats is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.keep_alive_interval):
                try:
                    self._beat()
                except RuntimeError:  # the store is gone: the agent finds out on its own
                    return

        self._beats = threading.Thread(target=loop, name="elasticjob-rdzv-keepalive", daemon=True)
        self._beats.start()

    def _seal(self, target: int, count: int, *, wait_for_previous: bool = True) -> bool:
        """Propose round `target`'s member list from its first `count` slots (the first sealer
        wins). With `wait_for_previous`, propose nothing (False) while a live member of the last
        sealed round has not arrived: a round may not form beside one still running."""
        keys = [f"{target}/node/{i}" for i in range(count)]
        try:  # each slot's owner sets its id right after `add`
            self._kv.wait(keys, timedelta(seconds=self.stale_after))
        except DistStoreError:  # an owner died in between: leave its slot out
            keys = [k for k in keys if self._kv.check([k])]
        nodes = [v.decode() for v in self._kv.multi_get(keys)]
        if wait_for_previous and self._previous_still_running(target, nodes):
            return False
        alive = [n for n in nodes if n == self.node_id or n not in self._stale(nodes)]
        proposal = ",".join(alive) if len(alive) >= self.min_nodes else _TOO_FEW
        won = self._kv.compare_set(f"{target}/members", "", proposal).decode()
        if won == proposal and won != _TOO_FEW:
            self._kv.set("sealed_round", str(target))
        return True

    def _stale(self, nodes: list[str]) -> set[str]:
        """The nodes whose keep-alive is older than keep_alive_interval * keep_alive_max_attempt."""
        if not nodes:
            return set()
        now = time.time()
        beats = self._kv.multi_get([f"hb/{n}" for n in nodes])
        return {n for n, b in zip(nodes, beats, strict=True) if now - float(b) >= self.stale_after}

    def _previous_still_running(self, target: int, arrived: list[str]) -> bool:
        previous = self._int("sealed_round")
        if not 0 < previous < target:
            return False
        members = self._kv.get(f"{previous}/members").decode()
        if members in (_TOO_FEW, _CLOSED):
            return False
        pending = [n for n in members.split(",") if n not in arrived]
        return len(self._stale(pending)) < len(pending)

    def _await_members(self, target: int, slot: int, deadline: float) -> list[str]:
        """Block on round `target`'s member list; seal it when its last call is over.

        The min_nodes-th arrival stamps `min_at`; whoever wakes after `min_at + last_call` seals.
        Waits are long (no polling): a node only wakes early when the list appears.
        """
        key = f"{target}/members"
        if slot == self.min_nodes - 1:
            self._kv.set(f"{target}/min_at", repr(time.time()))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                arrived = min(self._int(f"{target}/count"), self.max_nodes)
                raise RendezvousTimeoutError(
                    f"round {target} of rendezvous {self.run_id!r} did not complete within {self.join_timeout} s "
                    f"({arrived} of min {self.min_nodes} nodes arrived)"
                )
            act_in = self.last_call_timeout + self.stale_after  # fewer than min_nodes so far: look again later
            if self._kv.check([f"{target}/min_at"]):
                act_in = float(self._kv.get(f"{target}/min_at")) + self.last_call_timeout - time.time()
                if act_in <= 0 and not self._kv.check([key]):
                    sealed = self._seal(target, min(self._int(f"{target}/count"), self.max_nodes))
                    act_in = 0.0 if sealed else self.keep_alive_interval  # else wait for the running round
            try:
                self._kv.wait([key], timedelta(seconds=max(0.01, min(remaining, act_in))))
            except DistStoreError as exc:
                if "timeout" not in str(exc).lower():
                    raise RendezvousConnectionError(str(exc)) from exc
                continue
            value = self._kv.get(key).decode()
            if value == _CLOSED:
                raise RendezvousClosedError
            return [] if value == _TOO_FEW else value.split(",")

    def _joined(self, target: int, members: list[str]) -> RendezvousInfo:
        self.round, self.world_size = target, len(members)
        self.rank = rank = members.index(self.node_id)
        store = PrefixStore(f"torch.rendezvous.{self.run_id}.{target}", self._root)
        bootstrap = RendezvousStoreInfo.build(rank, store, local_addr=self.local_addr)
        return RendezvousInfo(store, rank, len(members), bootstrap)


def create_handler(params: RendezvousParameters) -> StoreRendezvousHandler:
    """torch's handler-registry signature: `--rdzv-endpoint HOST:PORT` must be a running store."""
    # imported here: torch's registry loads this module (entry points) while torch itself is importing
    from elasticjob_launcher.config import split_endpoint
    from elasticjob_launcher.store import connect

    if not params.endpoint or ":" not in params.endpoint:
        raise ValueError(f"the {BACKEND} rendezvous needs --rdzv-endpoint HOST:PORT, got {params.endpoint!r}")
    host, port = split_endpoint(params.endpoint)
    join_timeout = float(params.get("join_timeout", 600))
    return StoreRendezvousHandler(
        params.run_id,
        connect(host, port, join_timeout),
        connect(host, port, join_timeout),  # keep-alives never queue behind a blocking wait
        min_nodes=params.min_nodes,
        max_nodes=params.max_nodes,
        local_addr=params.local_addr,
        join_timeout=join_timeout,
        last_call_timeout=float(params.get("last_call_timeout", 30)),
        keep_alive_interval=float(params.get("keep_alive_interval", 5)),
        keep_alive_max_attempt=int(params.get("keep_alive_max_attempt", 3)),
        heartbeat_timeout=float(params.get("heartbeat_timeout")) if params.get("heartbeat_timeout") else None,
    )


def torchrun_handler() -> Callable[[RendezvousParameters], RendezvousHandler]:
    """The `torchrun.handlers` entry point: stock torchrun loads the backend through it."""
    return create_handler


def register() -> None:
    """Make `--rdzv-backend elasticjob` known to torch's handler registry (idempotent)."""
    handler_registry.register(BACKEND, create_handler)

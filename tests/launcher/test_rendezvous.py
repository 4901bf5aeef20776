"""The O(1) rendezvous handler (`--rdzv-backend elasticjob`) against a real TCPStore.

Nodes are handlers in threads of this process, each with its own store connections, as agents
in separate pods would be; the training-level behaviour (restarts, scaling) is covered by the
launcher tests that run `elasticjob-launch --rdzv-backend elasticjob`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from elasticjob_launcher.rendezvous import StoreRendezvousHandler
from torch.distributed import TCPStore
from torch.distributed.elastic.rendezvous import RendezvousClosedError, RendezvousTimeoutError

MADE: list[StoreRendezvousHandler] = []


@pytest.fixture
def server() -> Iterator[TCPStore]:
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, use_libuv=True)
    yield store
    for h in MADE:  # keep-alive threads stop before the store goes
        h._stop.set()
        if h._beats is not None:
            h._beats.join(5)
    MADE.clear()
    del store


def handler(server: TCPStore, run_id: str = "job", **kw: Any) -> StoreRendezvousHandler:
    def client() -> TCPStore:
        return TCPStore("127.0.0.1", server.port, is_master=False, timeout=timedelta(seconds=30))

    settings: dict[str, Any] = {"min_nodes": 2, "max_nodes": 2, "local_addr": "127.0.0.1", "keep_alive_interval": 0.2}
    made = StoreRendezvousHandler(run_id, client(), client(), **{**settings, **kw})
    MADE.append(made)
    return made


def join_all(handlers: list[StoreRendezvousHandler]) -> list[Any]:
    """next_rendezvous() on every handler at once; (rank, world, round) or the exception, in order."""
    results: list[Any] = [None] * len(handlers)

    def one(i: int) -> None:
        try:
            info = handlers[i].next_rendezvous()
            results[i] = (info.rank, info.world_size, handlers[i].round)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(handlers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_max_nodes_seal_at_once_with_distinct_ranks(server: TCPStore) -> None:
    hs = [handler(server, min_nodes=8, max_nodes=8, last_call_timeout=300) for _ in range(8)]
    started = time.monotonic()
    results = join_all(hs)
    assert sorted(r[0] for r in results) == list(range(8))
    assert {(r[1], r[2]) for r in results} == {(8, 1)}
    assert time.monotonic() - started < 60  # sealed by the last arrival, not by the 300 s last call
    assert [h.num_nodes_waiting() for h in hs] == [0] * 8


def test_min_nodes_seal_after_last_call_and_late_nodes_wait_for_the_next_round(server: TCPStore) -> None:
    hs = [handler(server, min_nodes=2, max_nodes=4, last_call_timeout=1) for _ in range(2)]
    results = join_all(hs)
    assert sorted(results) == [(0, 2, 1), (1, 2, 1)]
    late = handler(server, min_nodes=2, max_nodes=4, last_call_timeout=1)
    late_result: list[Any] = []
    t = threading.Thread(target=lambda: late_result.append(late.next_rendezvous().world_size))
    t.start()
    deadline = time.monotonic() + 30
    while hs[0].num_nodes_waiting() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [h.num_nodes_waiting() for h in hs] == [1, 1]
    results = join_all(hs)  # the members restart, as their agents do when nodes are waiting
    t.join(30)
    assert late_result == [3]
    assert {r[1:] for r in results} == {(3, 2)} and late.round == 2
    assert sorted([r[0] for r in results] + [late.rank]) == [0, 1, 2]


def test_a_spare_neither_restarts_a_full_round_nor_forms_one_beside_it(server: TCPStore) -> None:
    hs = [handler(server, min_nodes=1, max_nodes=2, last_call_timeout=0.2) for _ in range(2)]
    join_all(hs)
    spare = handler(server, min_nodes=1, max_nodes=2, last_call_timeout=0.2)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(join_all([spare])[0]))
    t.start()
    time.sleep(2)  # ten last calls: it must still wait, the running round's members being alive
    assert spare._kv.check(["2/node/0"]), "the spare did not queue for round 2"
    assert got == [] and not spare._kv.check(["2/members"])
    assert [h.num_nodes_waiting() for h in hs] == [0, 0]
    spare.shutdown()
    t.join(10)
    assert len(got) == 1 and isinstance(got[0], RendezvousClosedError)


def test_a_full_round_restarts_for_the_replacement_of_a_member_that_left(server: TCPStore) -> None:
    hs = [handler(server, min_nodes=2, max_nodes=2, keep_alive_interval=60) for _ in range(2)]
    assert {r[1:] for r in join_all(hs)} == {(2, 1)}
    hs[1].leave()  # its pod was deleted, before it could mark anything
    replacement = handler(server, min_nodes=2, max_nodes=2, keep_alive_interval=60)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(join_all([replacement])[0]))
    t.start()
    wait = time.monotonic() + 10
    while hs[0].num_nodes_waiting() == 0 and time.monotonic() < wait:
        time.sleep(0.05)
    assert hs[0].num_nodes_waiting() == 1  # the survivor sees it, though its round is full
    assert join_all([hs[0]])[0][1:] == (2, 2)
    t.join(10)
    assert got[0][1:] == (2, 2)


def test_after_a_drain_the_survivors_form_the_next_round_without_waiting_for_it(server: TCPStore) -> None:
    hs = [handler(server, min_nodes=1, max_nodes=3, last_call_timeout=0.2, keep_alive_interval=60) for _ in range(3)]
    assert {r[1] for r in join_all(hs)} == {3}
    hs[2].leave()  # drained: the keep-alive would only go stale after 180 s
    started = time.monotonic()
    assert {r[1:] for r in join_all(hs[:2])} == {(2, 2)}
    assert time.monotonic() - started < 30


def test_a_node_dead_before_the_seal_is_left_out(server: TCPStore) -> None:
    dead = handler(server, min_nodes=2, max_nodes=3, last_call_timeout=0.5)
    # it arrives, then dies: its keep-alive stops (stamped far in the past)
    dead._kv.add("1/count", 1)
    dead._kv.set("1/node/0", dead.node_id)
    dead._kv.set(f"hb/{dead.node_id}", repr(time.time() - 3600))
    hs = [handler(server, min_nodes=2, max_nodes=3, last_call_timeout=0.5) for _ in range(2)]
    results = join_all(hs)
    assert sorted(results) == [(0, 2, 1), (1, 2, 1)]


def test_too_few_alive_at_the_seal_starts_a_new_round(server: TCPStore) -> None:
    dead = handler(server, min_nodes=2, max_nodes=2)
    dead._kv.add("1/count", 1)
    dead._kv.set("1/node/0", dead.node_id)
    dead._kv.set(f"hb/{dead.node_id}", repr(time.time() - 3600))
    # whoever takes round 1's last slot seals it with one live node of min 2: the round is void,
    # and both nodes meet in round 2
    results = join_all([handler(server, min_nodes=2, max_nodes=2) for _ in range(2)])
    assert sorted(results) == [(0, 2, 2), (1, 2, 2)]


def test_join_timeout_says_how_many_arrived(server: TCPStore) -> None:
    alone = handler(server, min_nodes=3, max_nodes=3, join_timeout=1)
    with pytest.raises(RendezvousTimeoutError, match="1 of min 3 nodes arrived"):
        alone.next_rendezvous()


def test_closing_wakes_the_nodes_still_waiting(server: TCPStore) -> None:
    waiting = handler(server, min_nodes=2, max_nodes=2)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(join_all([waiting])[0]))
    t.start()
    time.sleep(0.5)
    closer = handler(server, min_nodes=2, max_nodes=2)
    closer.shutdown()
    t.join(10)
    assert len(got) == 1 and isinstance(got[0], RendezvousClosedError)
    assert waiting.is_closed()
    with pytest.raises(RendezvousClosedError):
        handler(server, min_nodes=2, max_nodes=2).next_rendezvous()


def test_runs_do_not_share_keys(server: TCPStore) -> None:
    a = [handler(server, "a", min_nodes=2, max_nodes=2) for _ in range(2)]
    b = [handler(server, "b", min_nodes=1, max_nodes=1)]
    assert {r[1] for r in join_all(a)} == {2}
    assert join_all(b) == [(0, 1, 1)]

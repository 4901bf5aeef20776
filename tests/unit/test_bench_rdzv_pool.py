"""B3's pool of agent processes against the project's real store: trials, and a dead process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from elasticjob_bench import rdzv
from torch.distributed import TCPStore


@pytest.fixture
def pool_and_store() -> Iterator[tuple[rdzv.Pool, TCPStore]]:
    port, server = rdzv.start_store()
    try:
        store = TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
        pool = rdzv.Pool.start(1, port)
        try:
            yield pool, store
        finally:
            pool.stop()
    finally:
        server.terminate()
        server.wait(30)


def test_every_agent_gets_a_rank_and_the_process_serves_the_next_trial(
    pool_and_store: tuple[rdzv.Pool, TCPStore],
) -> None:
    pool, store = pool_and_store
    for variant in ("elasticjob", "stock"):
        result = rdzv.trial(pool, store, 8, 30, rdzv.VARIANTS[variant])
        assert result["ok"], result
        assert result["seconds"] is not None
        assert result["error"] is None


def test_a_dead_process_is_reported_with_its_log_and_renew_replaces_it(
    pool_and_store: tuple[rdzv.Pool, TCPStore],
) -> None:
    pool, store = pool_and_store
    pool.procs[0].kill()
    pool.procs[0].wait(30)
    with pytest.raises(RuntimeError, match="rendezvous agent process 0 died"):
        rdzv.trial(pool, store, 8, 30, rdzv.VARIANTS["elasticjob"])
    pool.renew([0])
    assert rdzv.trial(pool, store, 8, 30, rdzv.VARIANTS["elasticjob"])["ok"]

"""elasticjob-launch with real torch on CPU: rendezvous, restarts, elasticity, store restart, drain.

Every test runs with both rendezvous backends: torch's c10d handler and the project's own.
"""

from __future__ import annotations

import signal
import time

import pytest
from elasticjob_api.exitcodes import ExitCode

from .conftest import Procs, free_port


@pytest.fixture(autouse=True, params=["c10d", "elasticjob"])
def backend(request: pytest.FixtureRequest, procs: Procs) -> str:
    procs.backend = request.param
    return procs.backend


def assert_world(procs: Procs, world: int) -> None:
    results = procs.results()
    assert sorted(results) == list(range(world)), results
    expected = sum(range(world))
    for rank, r in results.items():
        assert r["world"] == world and r["sum"] == expected and r["rank"] == rank


def test_two_agents_all_reduce(procs: Procs) -> None:
    port = free_port()
    procs.store(port)
    agents = [procs.agent(port, f"agent{i}") for i in range(2)]
    assert [procs.wait(a) for a in agents] == [0, 0]
    assert_world(procs, 4)
    assert {r["restart"] for r in procs.results().values()} == {0}


def test_worker_failing_once_is_restarted_exactly_once(procs: Procs) -> None:
    port = free_port()
    procs.store(port)
    agents = [procs.agent(port, f"agent{i}", FAIL_ONCE_RANK="1") for i in range(2)]
    assert [procs.wait(a) for a in agents] == [0, 0]
    assert_world(procs, 4)
    # one fault -> one job-wide group restart, and every agent agrees on the count
    assert {r["restart"] for r in procs.results().values()} == {1}


def test_restart_budget_is_job_wide(procs: Procs) -> None:
    port = free_port()
    procs.store(port)
    agents = [procs.agent(port, f"agent{i}", restarts=0, FAIL_ONCE_RANK="3") for i in range(2)]
    # rank 3 exits before it joins the process group: its peers wait in init_process_group, and
    # their agent stops them when the failed node closes the rendezvous (not at gloo's timeout)
    assert [procs.wait(a) for a in agents] == [ExitCode.USER_ERROR, ExitCode.USER_ERROR]
    assert sum("the job failed on another node" in procs.log(f"agent{i}") for i in range(2)) == 1
    assert procs.results() == {}


def test_third_agent_is_admitted_at_next_round(procs: Procs) -> None:
    port = free_port()
    procs.store(port)
    first = [procs.agent(port, f"agent{i}", STEPS="400", STEP_SLEEP="0.05") for i in range(2)]
    time.sleep(8)
    third = procs.agent(port, "agent2", STEPS="400", STEP_SLEEP="0.05")
    assert [procs.wait(a) for a in [*first, third]] == [0, 0, 0]
    assert_world(procs, 6)
    # a membership change is not a fault
    assert {r["restart"] for r in procs.results().values()} == {0}


def test_agents_survive_a_store_restart(procs: Procs) -> None:
    port = free_port()
    store = procs.store(port, generation=1)
    agents = [procs.agent(port, f"agent{i}", STEPS="300", STEP_SLEEP="0.05") for i in range(2)]
    time.sleep(8)
    store.kill()
    store.wait()
    time.sleep(1)
    procs.store(port, generation=2)
    assert [procs.wait(a) for a in agents] == [0, 0]
    assert_world(procs, 4)
    assert "store generation 2" in procs.log("agent0")


def test_drained_agent_leaves_without_closing_the_rendezvous(procs: Procs) -> None:
    port = free_port()
    procs.store(port)
    agents = [procs.agent(port, f"agent{i}", STEPS="300", STEP_SLEEP="0.05") for i in range(3)]
    time.sleep(10)
    agents[2].send_signal(signal.SIGTERM)
    assert procs.wait(agents[2]) == ExitCode.DRAINED
    assert [procs.wait(a) for a in agents[:2]] == [0, 0]
    assert_world(procs, 4)
    for name in ("agent0", "agent1"):
        assert "RendezvousClosedError" not in procs.log(name)
    # the drain is not counted as a fault
    assert {r["restart"] for r in procs.results().values()} == {0}

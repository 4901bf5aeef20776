"""A worker process SIGKILLed 20 times in a row: every fault recovers with exactly one group restart."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .conftest import Procs, free_port

KILLS = 20


def read_pid(pids: Path, rank: int) -> tuple[int, int] | None:
    try:
        pid, restart, _ = (pids / f"rank{rank}-pid").read_text().split()
        return int(pid), int(restart)
    except (FileNotFoundError, ValueError):
        return None


def wait_for_attempt(pids: Path, rank: int, restart: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = read_pid(pids, rank)
        if got is not None and got[1] == restart:
            return got[0]
        if got is not None and got[1] > restart:
            raise AssertionError(f"expected restart {restart}, workers are already at {got[1]}")
        time.sleep(0.2)
    raise AssertionError(f"rank {rank} never started attempt {restart}")


def test_twenty_kills_twenty_single_restarts(procs: Procs) -> None:
    port = free_port()
    procs.store(port)
    pids = procs.tmp / "pids"
    pids.mkdir()
    env = {"STEPS": "100000", "STEP_SLEEP": "0.05", "PIDS": str(pids)}
    agents = [procs.agent(port, f"agent{i}", restarts=KILLS, **env) for i in range(2)]
    for attempt in range(KILLS):
        victim = 3 if attempt % 2 else 0  # alternate between the two agents' workers
        pid = wait_for_attempt(pids, victim, attempt)
        time.sleep(1.0)  # let the round's collectives start
        os.kill(pid, signal.SIGKILL)
        # the next attempt is exactly restart attempt+1 on every rank: one group restart per fault
        for rank in range(4):
            wait_for_attempt(pids, rank, attempt + 1)
    for a in agents:
        a.kill()
    assert "job-wide restart 20/20" in procs.log("agent0") + procs.log("agent1")

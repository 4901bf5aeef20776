"""Pinning for real on this machine: workers get disjoint CPUs inside the launcher's own affinity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

SCRIPT = Path(__file__).with_name("pin_report.py")


@pytest.fixture(params=["preload", "exec"])
def start(request: pytest.FixtureRequest) -> str:
    """Pinning is applied in the forked worker (preload) or by a shim before exec."""
    return str(request.param)


def run(tmp_path: Path, nproc: int, cpus: set[int], start: str) -> list[dict[str, object]]:
    cmd = [sys.executable, "-m", "elasticjob_launcher.cli", "--standalone", "--nproc-per-node", str(nproc),
           "--numa-binding", "exclusive", "--worker-start", start, str(SCRIPT)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["OUT"] = str(tmp_path)
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=120, check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),  # the launcher's own (narrowed) affinity
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pinning (exclusive): local rank 0" in result.stderr
    return [json.loads((tmp_path / f"pin{r}.json").read_text()) for r in range(nproc)]


def test_exclusive_binding_is_disjoint_and_inside_the_launchers_affinity(tmp_path: Path, start: str) -> None:
    mine = os.sched_getaffinity(0)
    if len(mine) < 2:
        pytest.fail("this test needs at least 2 CPUs")
    workers = run(tmp_path, 2, mine, start)
    sets = [set(cast(list[int], w["cpus"])) for w in workers]
    assert all(sets) and not sets[0] & sets[1]
    assert sets[0] | sets[1] <= mine
    assert [w["omp"] for w in workers] == [str(len(s)) for s in sets]


def test_narrowed_affinity_is_respected(tmp_path: Path, start: str) -> None:
    last = max(os.sched_getaffinity(0))
    workers = run(tmp_path, 1, {last}, start)
    assert workers[0]["cpus"] == [last] and workers[0]["omp"] == "1"

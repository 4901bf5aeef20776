"""`elasticjob_launcher.api`: torch's launcher API shape, run by the project's agent, on CPU with gloo."""

from __future__ import annotations

import json
import multiprocessing
import sys
import threading
from pathlib import Path

import pytest
from elasticjob_launcher.api import ChildFailedError, LaunchConfig, elastic_launch

from . import api_entrypoints
from .conftest import SCRIPT, Procs, free_port


def files(out: Path) -> dict[str, dict[str, object]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("fn*.json"))}


def standalone(**kw: object) -> LaunchConfig:
    return LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2, standalone=True, max_restarts=0, **kw)  # type: ignore[arg-type]


def test_function_entrypoint_returns_per_rank_values(tmp_path: Path) -> None:
    results = elastic_launch(standalone(), api_entrypoints.all_reduce)(str(tmp_path), 10)
    assert results == {0: {"rank": 0, "value": 0, "world": 2}, 1: {"rank": 1, "value": 10, "world": 2}}
    assert files(tmp_path) == {
        "fn0-0": {"rank": 0, "world": 2, "sum": 1.0},
        "fn1-0": {"rank": 1, "world": 2, "sum": 1.0},
    }


@pytest.mark.parametrize("worker_start", ["preload", "exec"])
def test_command_entrypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker_start: str) -> None:
    monkeypatch.setenv("OUT", str(tmp_path))
    results = elastic_launch(standalone(worker_start=worker_start), sys.executable)("-u", str(SCRIPT))
    assert sorted(results) == [0, 1]
    ranks = {json.loads(p.read_text())["rank"]: json.loads(p.read_text()) for p in tmp_path.glob("rank*.json")}
    assert {r: (v["world"], v["sum"]) for r, v in ranks.items()} == {0: (2, 1.0), 1: (2, 1.0)}


def test_failing_rank_raises_child_failed_error_with_its_error(tmp_path: Path) -> None:
    with pytest.raises(ChildFailedError) as info:
        elastic_launch(standalone(), api_entrypoints.fail_rank)(str(tmp_path), 1, False)
    assert list(info.value.failures) == [1]
    failure = info.value.failures[1]
    assert failure.exitcode != 0 and "rank 1 broke on attempt 0" in json.dumps(failure.message)
    assert set(files(tmp_path)) == {"fn0-0", "fn1-0"}


def test_a_failed_round_is_restarted(tmp_path: Path) -> None:
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2, standalone=True, max_restarts=1)
    results = elastic_launch(config, api_entrypoints.fail_rank)(str(tmp_path), 0, True)
    assert results == {0: 1, 1: 1}  # each returns its attempt: both ran again, once
    assert set(files(tmp_path)) == {"fn0-0", "fn1-0", "fn0-1", "fn1-1"}


def test_two_agents_through_an_external_store(tmp_path: Path, procs: Procs) -> None:
    """One agent through the API in this process, one through the CLI in another, one store."""
    port = free_port()
    procs.store(port)
    other = procs.start(
        [sys.executable, "-m", "elasticjob_launcher.cli", "--nnodes", "2", "--nproc-per-node", "2",
         "--rdzv-backend", "elasticjob", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "api",
         "--run-path", str(Path(api_entrypoints.__file__).with_name("api_cli_entry.py")), str(tmp_path)],
        "cli-agent",
    )  # fmt: skip
    config = LaunchConfig(min_nodes=2, max_nodes=2, nproc_per_node=2, rdzv_backend="elasticjob",
                          rdzv_endpoint=f"127.0.0.1:{port}", run_id="api", max_restarts=0)  # fmt: skip
    results: dict[int, object] = {}
    thread = threading.Thread(
        target=lambda: results.update(elastic_launch(config, api_entrypoints.all_reduce)(str(tmp_path), 1))
    )
    thread.start()
    thread.join(180)
    assert procs.wait(other) == 0, procs.log("cli-agent")
    assert sorted(results) in ([0, 1], [2, 3])
    assert {k: v["sum"] for k, v in files(tmp_path).items()} == {f"fn{r}-0": 6.0 for r in range(4)}


def _launch_in_a_fork(out: str) -> None:
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2, standalone=True, max_restarts=0)
    elastic_launch(config, sys.executable)("-u", str(SCRIPT))


def test_a_fork_of_a_launching_process_launches_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked process (multiprocessing's fork, as torch's own tests use) inherits the parent's
    forkserver handle; its launch must start a forkserver of its own."""
    monkeypatch.setenv("OUT", str(tmp_path))
    elastic_launch(standalone(), sys.executable)("-u", str(SCRIPT))  # this process now runs a forkserver
    for p in tmp_path.glob("rank*.json"):
        p.unlink()
    child = multiprocessing.get_context("fork").Process(target=_launch_in_a_fork, args=(str(tmp_path),))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert sorted(p.name for p in tmp_path.glob("rank*.json")) == ["rank0.json", "rank1.json"]

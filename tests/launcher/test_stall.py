"""Stall detection with real torch workers (CPU, gloo): a hang is reported as `Hang`, the group restarts.

Each launch runs in this process (`launch_agent`), reporting through the real `Reporter` to a local
HTTP server that records the PATCH bodies; the workers run hang_check.py, which writes one file per
rank. gloo's timeout (60 s) is far longer than the stall timeout, so detection ends every hang.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from elasticjob_launcher import reporter
from elasticjob_launcher.api import LaunchConfig
from elasticjob_launcher.launch import launch_agent

from .conftest import LAUNCH, Procs, free_port

SCRIPT = Path(__file__).with_name("hang_check.py")
POD = "job-worker-0"


def _line_of(marker: str) -> int:
    return next(n for n, line in enumerate(SCRIPT.read_text().splitlines(), 1) if marker in line)


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]]

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body["status"]["restarts"]["workers"][POD])
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[reporter.Target, list[dict[str, Any]]]]:
    """A status API that records what the launcher's Reporter sends."""

    class Recorder(_Recorder):
        bodies: list[dict[str, Any]] = []  # noqa: RUF012 (this test's own class)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    (tmp_path / "token").write_text("t")
    target = reporter.Target(
        "ns", "job", POD, f"http://127.0.0.1:{server.server_port}", tmp_path / "token", tmp_path / "ca.crt"
    )
    yield target, Recorder.bodies
    server.shutdown()


def _launch(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: reporter.Target,
    *,
    nproc: int,
    timeout: float,
    worker_start: str = "preload",
    **env: str,
) -> dict[int, dict[str, Any]]:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("OUT", str(out))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, standalone=True, max_restarts=1,
        monitor_interval=0.2, stall_timeout=timeout, worker_start=worker_start,
    )  # fmt: skip
    launch_agent(config, sys.executable, ["-u", str(SCRIPT)], sink=reporter.Reporter(target))
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in out.glob("rank*.json")}


def _hang(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    hangs: list[dict[str, Any]] = [
        b["lastFailure"] for b in bodies if b.get("lastFailure", {}).get("failureClass") == "Hang"
    ]
    assert hangs, f"no Hang reported: {bodies}"
    return hangs[0]


def _resumed(results: dict[int, dict[str, Any]], nproc: int, hang_step: int = 3, steps: int = 6) -> None:
    """The second attempt resumed from the checkpoint and finished every step."""
    assert sorted(results) == list(range(nproc)), results
    for r in results.values():
        assert r["restart"] == 1 and r["start"] == hang_step and r["total"] == nproc * (steps - hang_step), r


def _reported_before_restart(caplog: pytest.LogCaptureFixture, rank: int) -> str:
    messages = [rec.getMessage() for rec in caplog.records]
    hang = next(i for i, m in enumerate(messages) if m.startswith(f"HANG: rank {rank} "))
    restart = next(i for i, m in enumerate(messages) if "job-wide restart 1/1" in m)
    assert hang < restart, messages
    return messages[hang]


def test_a_rank_blocked_in_all_reduce_is_reported_and_the_group_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """No progress API: rank 0 waits in an all_reduce rank 1 never joins; detection, not gloo, ends it."""
    target, bodies = api
    with caplog.at_level(logging.INFO):
        results = _launch(tmp_path, monkeypatch, target, nproc=2, timeout=3, HANG="collective")
    _resumed(results, 2)
    hang = _hang(bodies)
    assert hang["globalRank"] == 0 and hang["stalledSeconds"] >= 3 and hang["step"] is None
    assert "in all_reduce" in hang["message"]
    assert f'hang_check.py", line {_line_of("HANG-COLLECTIVE")} in <module>' in hang["message"]
    logged = _reported_before_restart(caplog, 0)
    assert f"line {_line_of('HANG-OUTSIDE')} in <module>" in logged  # rank 1's stack is logged too
    assert bodies[-1]["restarts"] == 1 and bodies[-1]["lastFailure"] == hang


def test_with_the_progress_api_the_rank_outside_the_collective_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The same hang with progress.step(): rank 1, which stopped stepping outside any collective, is the cause."""
    target, bodies = api
    with caplog.at_level(logging.INFO):
        results = _launch(tmp_path, monkeypatch, target, nproc=2, timeout=3, HANG="collective", USE_PROGRESS="1")
    _resumed(results, 2)
    hang = _hang(bodies)
    assert hang["globalRank"] == 1 and hang["step"] == 3 and hang["stalledSeconds"] >= 3
    assert "outside any collective" in hang["message"] and "after step 3" in hang["message"]
    assert f'hang_check.py", line {_line_of("HANG-OUTSIDE")} in <module>' in hang["message"]
    _reported_before_restart(caplog, 1)


@pytest.mark.parametrize("worker_start", ["preload", "exec"])
def test_a_rank_that_stops_stepping_outside_any_collective_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: Any, worker_start: str
) -> None:
    """One rank, no collective in flight: the stall is "no step for longer than the timeout" (exec'd workers too)."""
    target, bodies = api
    results = _launch(
        tmp_path, monkeypatch, target, nproc=1, timeout=2, worker_start=worker_start, HANG="outside", USE_PROGRESS="1"
    )
    _resumed(results, 1)
    hang = _hang(bodies)
    assert hang["globalRank"] == 0 and hang["step"] == 3 and "outside any collective" in hang["message"]
    assert f'hang_check.py", line {_line_of("HANG-OUTSIDE")} in <module>' in hang["message"]


def test_steady_slow_steps_never_stall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: Any) -> None:
    """1.5 s steps under a 5 s timeout: rank 0 waits ~1.4 s in each all_reduce for rank 1; no Hang, no restart."""
    target, bodies = api
    results = _launch(
        tmp_path, monkeypatch, target, nproc=2, timeout=5, STEPS="4", STEP_SLEEP_RANK1="1.5", USE_PROGRESS="1"
    )
    assert sorted(results) == [0, 1]
    assert all(r["restart"] == 0 and r["start"] == 0 and r["total"] == 8 for r in results.values()), results
    assert not any("lastFailure" in b for b in bodies) and bodies[-1]["restarts"] == 0


def test_a_peer_asleep_outside_any_collective_restarts_with_the_hung_group(procs: Procs) -> None:
    """Two agents of one worker each: rank 0 blocks in all_reduce and its agent kills the group;
    rank 1 sleeps outside any collective without the progress API, so its agent sees no stall and
    its worker no broken collective. It restarts because the other agent counted a fault of the
    round (agent.py, "a round broken elsewhere"), and both resume from the checkpoint."""
    port = free_port()
    procs.store(port)
    args = [
        *LAUNCH, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "elasticjob",
        "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "hang", "--max-restarts", "1",
        "--rdzv-conf", "last_call_timeout=2,join_timeout=120", "--monitor-interval", "0.2",
        "--stall-timeout", "3", str(SCRIPT),
    ]  # fmt: skip
    agents = [procs.start(args, f"agent{i}", HANG="collective") for i in range(2)]
    assert [procs.wait(a, 120) for a in agents] == [0, 0]
    _resumed(procs.results(), 2)
    assert sum("another agent's group failed in this round" in procs.log(f"agent{i}") for i in range(2)) == 1

"""Fixtures of the launcher tests: real `elasticjob-launch` processes on CPU with gloo."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).with_name("train_check.py")
LAUNCH = [sys.executable, "-m", "elasticjob_launcher.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    """Processes started by one test; all are killed at teardown."""

    def __init__(self, tmp: Path, backend: str = "c10d") -> None:
        self.tmp = tmp
        self.backend = backend  # the agents' --rdzv-backend
        self.procs: list[subprocess.Popen[bytes]] = []
        self.out = tmp / "out"
        self.out.mkdir()

    def start(self, args: list[str], name: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        full_env = {**os.environ, "OUT": str(self.out), "PYTHONUNBUFFERED": "1", **env}
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def store(self, port: int, generation: int = 0, health: int | None = None) -> subprocess.Popen[bytes]:
        args = [*LAUNCH, "store", "--port", str(port), "--generation", str(generation)]
        if health:
            args += ["--health-port", str(health)]
        proc = self.start(args, f"store-g{generation}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return proc
            time.sleep(0.1)
        raise RuntimeError("store did not start")

    def agent(
        self, port: int, name: str, *, nnodes: str = "2:3", restarts: int = 2, **env: str
    ) -> subprocess.Popen[bytes]:
        args = [
            *LAUNCH, "--nnodes", nnodes, "--nproc-per-node", "2", "--rdzv-backend", self.backend,
            "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "test", "--max-restarts", str(restarts),
            "--rdzv-conf", "last_call_timeout=2,join_timeout=120", "--monitor-interval", "0.2", str(SCRIPT),
        ]  # fmt: skip
        return self.start(args, name, **env)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def results(self) -> dict[int, dict[str, Any]]:
        return {int(p.stem[4:]): json.loads(p.read_text()) for p in self.out.glob("rank*.json")}

    def wait(self, proc: subprocess.Popen[bytes], timeout: float = 180) -> int:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))
            raise AssertionError(f"process did not finish in {timeout}s\n{logs}") from None

    def stop_all(self) -> None:
        for proc in self.procs:  # the whole session: agents, the forkserver and preloaded workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # workers exec'd by torch run in sessions of their own: find them by this test's OUT
        marker = f"OUT={self.out}".encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    os.kill(int(pid), signal.SIGKILL)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.stop_all()

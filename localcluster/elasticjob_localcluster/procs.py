"""Background processes tracked by pid files, so `down` from another process can stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def start(state: Path, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Start `args` in its own session, logging to state/logs/<name>.log; returns the pid."""
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    with open(state / "logs" / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=dict(env) if env is not None else None,
        )  # fmt: skip
    (state / "pids" / name).write_text(str(proc.pid))
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def stop(state: Path, name: str, grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL after `grace`, remove the pid file."""
    pidfile = state / "pids" / name
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive(pid):
            break
    pidfile.unlink(missing_ok=True)


def running(state: Path) -> list[str]:
    pids = state / "pids"
    if not pids.exists():
        return []
    return [p.name for p in sorted(pids.iterdir()) if alive(int(p.read_text()))]

"""Warm worker starts: workers fork from a server process that has already imported torch.

With `--worker-start preload` (the default) the agent hands torch's elastic agent a Python
function instead of a command line, with the `forkserver` start method. Python's forkserver
imports `PRELOAD` once, when the agent starts; every worker of every round is then a fork of it
that runs the training script with `runpy`, as `python -u SCRIPT` (or `-m MODULE`) would. A
node's workers no longer import torch side by side after each restart: on 2 cores, 8 workers
spent ~7 s doing that (docs/benchmarks.md, B2).

Limits, and when to use `--worker-start exec` (torchrun's way: a fresh interpreter per worker):
* `--no-python` commands always run as commands.
* The forkserver's environment is the agent's at start-up plus each worker's variables, so a
  library that reads the environment only when imported (OpenMP's thread count) does so once.
  `OMP_NUM_THREADS` is therefore applied again through `torch.set_num_threads` in the worker.
* CPU pinning is applied in the forked worker; strict memory binding through `numactl` needs an
  exec, so preload workers rely on first-touch allocation on the CPUs they are pinned to.
* A worker keeps the forkserver's command line and its /proc environment; its name
  (`/proc/<pid>/comm`) is `ej-worker-<local rank>`.
* The script shares the preloaded modules' state as it was after import; a script that needs a
  different torch build or interpreter must use exec.
* With a stall timeout, a preloaded worker wraps torch.distributed's blocking calls before the
  script runs (`progress.install`); exec'd workers are watched only through `progress.step()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import runpy
import sys
from collections.abc import Callable
from multiprocessing import forkserver
from typing import Any

from elasticjob_launcher import progress

#: imported once by the forkserver, before any worker forks from it (this module records its environment)
PRELOAD = ("torch", "torch.distributed", "torch.distributed.elastic.multiprocessing", __name__)

#: the environment of the process that imported this module: in a worker, the forkserver's
_SERVER_ENV = dict(os.environ)

START_METHOD = "forkserver"


#: torch's logger of a function-entrypoint worker's failure (`MultiprocessContext._poll`)
_FAILURE_LOGGER = "torch.distributed.elastic.multiprocessing.api"


class _FailureWithoutTraceback(logging.Filter):
    """Log a worker's failure as one line, without the agent-side traceback.

    torch logs a failed function-entrypoint worker with `logger.exception`, and torch's log
    formatter imports `torch._dynamo` to format any traceback: 1.3 s on an idle machine and
    several seconds on a busy node, in every agent, on the recovery path. That traceback is of
    torch's own `ProcessExitedException`; the worker's own error is in its error file and stderr.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{record.getMessage()}: {record.exc_info[1]}", ()
            record.exc_info, record.exc_text = None, None
        return True


def _forget_inherited_forkserver() -> None:
    """A process forked from one that ran a forkserver inherits its handle, but is not its parent
    (`ensure_running` would fail on `waitpid`): forget the handle, so this process starts its own.
    Reads the stdlib's private singleton (CPython 3.11-3.13), the only place that state lives."""
    server: Any = forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        alive = getattr(server, "_forkserver_alive_fd", None)
        if alive is not None:
            with contextlib.suppress(OSError):
                os.close(alive)
        server._forkserver_pid = server._forkserver_address = server._forkserver_alive_fd = None


def warm_up() -> None:
    """Start the forkserver (and its imports) now, so the first round's workers fork at once."""
    multiprocessing.set_forkserver_preload(list(PRELOAD))
    _forget_inherited_forkserver()
    forkserver.ensure_running()
    failures = logging.getLogger(_FAILURE_LOGGER)
    if not any(isinstance(f, _FailureWithoutTraceback) for f in failures.filters):
        failures.addFilter(_FailureWithoutTraceback())


def _apply_binding(plan: str) -> None:
    from elasticjob_launcher.pinning.exec import apply_cpu_binding

    bindings = json.loads(plan)
    binding = bindings[int(os.environ.get("LOCAL_RANK", "0")) % len(bindings)]
    note = apply_cpu_binding(binding)
    if binding.get("node") is not None:
        note += " (memory: first-touch on these CPUs; --worker-start exec binds it with numactl)"
    print(f"[elasticjob-pinning] {binding['describe']}{note}", file=sys.stderr, flush=True)


def agent_environment() -> str:
    """The agent's environment now, for `run_script` (a forkserver keeps the one it started with)."""
    return json.dumps(dict(os.environ))


def _restore_environment(agent_env: str) -> None:
    # torch sets the worker's own variables (RANK, ...) over the forkserver's environment: keep
    # those, and take everything else from the agent, as an exec'd worker would inherit it
    own = {k: v for k, v in os.environ.items() if _SERVER_ENV.get(k) != v}
    os.environ.clear()
    os.environ.update(json.loads(agent_env))
    os.environ.update(own)


def process_name(local_rank: int | str) -> str:
    """The name (`/proc/<pid>/comm`, what `top` and `ps -o comm` show) of a preloaded worker."""
    return f"ej-worker-{local_rank}"[:15]


def _set_process_name(name: str) -> None:
    # a fork keeps the forkserver's command line and environment; the name is what tells the
    # workers apart (tools that look for a local rank use it, see tests/e2e/helpers.py)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME


def run_script_path(script: str, *args: str) -> None:
    """torchrun's --run-path: the script runs with runpy in the worker's interpreter."""
    progress.install()  # collective stamps for the stall watch, when the agent runs one
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


def run_pinned(plan: str, fn: Callable[..., Any], *args: Any) -> Any:
    """A function entrypoint's worker, pinned first: returns what `fn(*args)` returns."""
    _apply_binding(plan)
    return fn(*args)


def run_script(kind: str, target: str, agent_env: str, plan: str, *args: str) -> None:
    """The worker's entrypoint in a forked process: run `target` as its `__main__`.

    `kind` is "script" or "module"; `agent_env` is `agent_environment()`; `plan` is the pinning
    plan as JSON, or "" for none. The script's `sys.exit(n)` becomes the process's exit code, as
    it would under python.
    """
    _restore_environment(agent_env)
    os.environ.pop("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", None)  # the agent's own switch (launch.py)
    _set_process_name(process_name(os.environ.get("LOCAL_RANK", "0")))
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True, write_through=True)  # type: ignore[union-attr]  # python -u
    if plan:
        _apply_binding(plan)
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))
    progress.install()  # collective stamps and the stack dump for the stall watch, when the agent runs one
    sys.argv = [target, *args]
    try:
        if kind == "module":
            sys.path.insert(0, os.getcwd())  # python -m: the working directory comes first
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            runpy.run_path(target, run_name="__main__")
    except SystemExit as exc:
        if exc.code in (None, 0):
            return
        raise

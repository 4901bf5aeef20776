"""Commands that start their own agent: run them once, with `torchrun` resolving to this launcher.

A trainer command such as `bash -c "exec torchrun ..."` or an entrypoint script that calls
`torchrun` starts an elastic agent itself; running it as each worker of another agent would put
two agents in the pod. `--command-starts-agent` decides (with `--no-python`):

* `no` (the default, torchrun's meaning of --no-python): the command is each worker;
* `yes`: the command is exec'd once, in place of this launcher, with a directory first on PATH
  that holds `torchrun` (this launcher) and `python`/`python3` shims that turn
  `python -m torch.distributed.run ...` into this launcher and exec the real interpreter for
  anything else. The command's agent is then this launcher: job-wide restarts, status reports;
* `auto` (what the operator passes): `yes` when the command, a `-c` string in it, or a script it
  names (its program, found on PATH, or an argument that is a file) mentions `torchrun`,
  `torch.distributed.run` or `elasticjob-launch` outside a comment; else `no`.

Limits: `auto` reads scripts one level deep (a script that calls a script that calls torchrun
needs `yes`); an agent started by absolute path (`/opt/venv/bin/torchrun`) is stock torchrun,
which rendezvouses through the job's store (the `elasticjob` backend is registered for it) but
neither reports status nor counts restarts job-wide (docs/launcher.md).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

MODES = ("no", "yes", "auto")
AGENT_WORDS = re.compile(r"(?:^|[\s/\"'=;|&(`])(torchrun|torch\.distributed\.run|elasticjob-launch)(?=$|[\s\"';|&)`])")
#: bytes of a script read for `auto`
SCAN_LIMIT = 256 * 1024
#: python options a shim skips before `-m torch.distributed.run`
PYTHON_FLAGS = ("-u", "-B", "-O", "-OO", "-E", "-s", "-S", "-q")


def _mentions_agent(text: str) -> bool:
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return any(AGENT_WORDS.search(line) for line in lines)


def _script_text(path: str) -> str:
    file = Path(path)
    try:
        if not file.is_file() or file.stat().st_size > SCAN_LIMIT:
            return ""
        data = file.read_bytes()
    except OSError:
        return ""
    if b"\0" in data[:4096]:  # a binary
        return ""
    return data.decode(errors="replace")


def starts_agent(command: Sequence[str]) -> bool:
    """`auto`'s answer for a command line (see the module docstring)."""
    if not command:
        return False
    if any(_mentions_agent(token) for token in command):  # the program, its arguments, a `-c` string
        return True
    program = shutil.which(command[0]) or command[0]
    return any(_mentions_agent(_script_text(p)) for p in (program, *command[1:]) if "\n" not in p)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def shim_directory(original_path: str) -> Path:
    """A new directory with `torchrun`, `python` and `python3` shims (see the module docstring)."""
    shims = Path(tempfile.mkdtemp(prefix="elasticjob-shims-"))
    launcher = f"#!{sys.executable} -S\nimport os, sys\nos.execv({sys.executable!r}, " + (
        f"[{sys.executable!r}, '-m', 'elasticjob_launcher.cli', *sys.argv[1:]])\n"
    )
    _write(shims / "torchrun", launcher)
    for name in ("python", "python3"):
        real = shutil.which(name, path=original_path)
        if real is None:
            continue
        _write(
            shims / name,
            f"#!{sys.executable} -S\nimport os, sys\nargs = sys.argv[1:]\ni = 0\n"
            f"while i < len(args) and args[i] in {PYTHON_FLAGS!r}:\n    i += 1\n"
            "if args[i:i + 2] == ['-m', 'torch.distributed.run']:\n"
            f"    os.execv({sys.executable!r}, [{sys.executable!r}, '-m', 'elasticjob_launcher.cli', *args[i + 2:]])\n"
            f"os.execv({real!r}, [{real!r}, *args])\n",
        )
    return shims


def exec_command(command: Sequence[str]) -> None:
    """Replace this process with `command`, this launcher first on its PATH as `torchrun`."""
    original = os.environ.get("PATH", os.defpath)
    env = {**os.environ, "PATH": f"{shim_directory(original)}{os.pathsep}{original}"}
    program = shutil.which(command[0], path=env["PATH"]) or command[0]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(program, list(command), env)  # noqa: S606 (the user's own command, as the pod would run it)

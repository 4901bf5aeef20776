"""Commands that start torchrun themselves run with exactly one agent: the launcher (hosted.py).

Real processes: a shell wrapper, an entrypoint script, and `python -m torch.distributed.run` inside
a script, each under `elasticjob-launch --no-python --command-starts-agent auto`. The nested-agent
guard is armed (ELASTICJOB_POD_NAME is set, as in a pod), so a second agent would fail the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from elasticjob_launcher import hosted

from .conftest import SCRIPT

LAUNCH = [sys.executable, "-m", "elasticjob_launcher.cli"]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["bash", "-c", "exec torchrun --nproc-per-node 2 t.py"], True),
        (["sh", "-c", "cd /x && python3 -u -m torch.distributed.run t.py"], True),
        (["bash", "-c", "python t.py"], False),
        (["python", "-c", "print('torchrunner')"], False),
        (["bash", "-c", "# torchrun is not used here\npython t.py"], False),
    ],
)
def test_auto_reads_the_command(command: list[str], expected: bool) -> None:
    assert hosted.starts_agent(command) is expected


def test_auto_reads_the_script_a_command_names(tmp_path: Path) -> None:
    script = tmp_path / "entry.sh"
    script.write_text('#!/bin/sh\n# an entrypoint\nset -e\n/opt/venv/bin/torchrun "$@"\n')
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\nexec python t.py\n")
    assert hosted.starts_agent([str(script), "t.py"]) and hosted.starts_agent(["bash", str(script)])
    assert not hosted.starts_agent([str(plain)])


def _run(tmp_path: Path, *command: str) -> tuple[int, dict[int, dict[str, object]], str]:
    out = tmp_path / "out"
    out.mkdir()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OUT": str(out), "ELASTICJOB_POD_NAME": "job-worker-0",
           "PET_NPROC_PER_NODE": "1", "PYTHONPATH": ":".join(sys.path)}  # fmt: skip
    done = subprocess.run([*LAUNCH, "--no-python", "--command-starts-agent", "auto", *command], env=env,
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    results = {json.loads(p.read_text())["rank"]: json.loads(p.read_text()) for p in out.glob("rank*.json")}
    return done.returncode, results, done.stdout + done.stderr


@pytest.mark.parametrize(
    "shell",
    [
        f"exec torchrun --standalone --nproc-per-node 2 {SCRIPT}",
        f"cd / && python -u -m torch.distributed.run --nproc_per_node=2 {SCRIPT}",
    ],
)
def test_a_shell_wrapper_that_starts_torchrun(tmp_path: Path, shell: str) -> None:
    code, results, log = _run(tmp_path, "bash", "-c", shell)
    assert code == 0, log
    assert {r: v["world"] for r, v in results.items()} == {0: 2, 1: 2}
    assert "[elasticjob-launch]" in log  # the agent is the launcher, not stock torchrun


def test_an_entrypoint_script_that_calls_torchrun(tmp_path: Path) -> None:
    entry = tmp_path / "entrypoint.sh"
    entry.write_text(f"#!/bin/sh\nset -e\necho starting\ntorchrun --nproc-per-node 2 {SCRIPT}\necho done\n")
    entry.chmod(0o755)
    code, results, log = _run(tmp_path, str(entry))
    assert code == 0, log
    assert sorted(results) == [0, 1] and "done" in log

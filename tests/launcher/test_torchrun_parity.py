"""Parity with the installed torch's torchrun: every flag, and the workers' environment.

A new torch that adds a flag or a worker variable fails here instead of silently diverging.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from elasticjob_launcher import cli
from torch.distributed.run import get_args_parser

PROBE = Path(__file__).with_name("env_probe.py")
#: worker variables whose values differ by design (docs/launcher.md, "Differences from torchrun")
DIFFERENT_BY_DESIGN = {
    "TORCHELASTIC_USE_AGENT_STORE": "a fresh worker store every round, hosted by rank 0 (the stale-restart fix)",
}
#: variables that differ between any two runs (ports, random run ids, temporary paths)
PER_RUN = {"MASTER_PORT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_ERROR_FILE", "OUT"}


def options(parser: object) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}  # type: ignore[attr-defined]


def test_every_torchrun_flag_is_accepted_and_listed(capsys: pytest.CaptureFixture[str]) -> None:
    torchrun = options(get_args_parser())
    assert torchrun - options(cli.build_parser()) == set()
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    assert [flag for flag in sorted(torchrun) if flag not in help_text] == []


def _worker_env(launcher: list[str], out: Path, *flags: str) -> dict[str, str]:
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS" and not k.startswith("PET_")}
    subprocess.run([*launcher, *flags, str(PROBE)], env={**env, "OUT": str(out)}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)  # fmt: skip
    env_of_rank1: dict[str, str] = json.loads((out / "env1.json").read_text())
    return env_of_rank1


@pytest.mark.parametrize(
    "flags", [("--nproc-per-node", "2"), ("--standalone", "--nproc-per-node", "2", "--max-restarts", "1")]
)
def test_workers_get_torchruns_environment(tmp_path: Path, flags: tuple[str, ...]) -> None:
    theirs = _worker_env([sys.executable, "-m", "torch.distributed.run"], tmp_path / "torchrun", *flags)
    ours = _worker_env([sys.executable, "-m", "elasticjob_launcher.cli"], tmp_path / "ours", *flags)
    assert sorted(set(theirs) ^ set(ours)) == []
    differ = {k for k in theirs if theirs[k] != ours[k]} - PER_RUN
    assert differ == set(DIFFERENT_BY_DESIGN), {k: (theirs[k], ours[k]) for k in differ}
    assert ours["OMP_NUM_THREADS"] == "1" and ours["MASTER_ADDR"] == theirs["MASTER_ADDR"]

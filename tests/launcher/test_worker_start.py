"""Both worker starts run a script as python would: preload forks from a server that imported torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from elasticjob_api.exitcodes import ExitCode
from elasticjob_launcher import cli

HERE = Path(__file__).parent


def probes(out: Path, world: int) -> list[dict[str, object]]:
    return [json.loads((out / f"probe{r}.json").read_text()) for r in range(world)]


@pytest.mark.parametrize("start", ["preload", "exec"])
@pytest.mark.parametrize("module", [False, True])
def test_script_runs_as_main_with_its_arguments(
    start: str, module: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.chdir(HERE)  # -m finds the module in the working directory, as python -m does
    target = ["-m", "worker_probe"] if module else [str(HERE / "worker_probe.py")]
    argv = ["--standalone", "--nproc-per-node", "2", "--worker-start", start, *target, "--lr", "0.1"]
    assert cli.entry(argv) == ExitCode.SUCCESS
    for rank, probe in enumerate(probes(tmp_path, 2)):
        assert probe["name"] == "__main__"
        # a preloaded worker is named for its local rank (tests/e2e/helpers.py finds it by that)
        if start == "preload":
            assert probe["comm"] == f"ej-worker-{rank}"
        else:
            assert str(probe["comm"]).startswith("python")
        assert probe["argv"] == ["--lr", "0.1"]
        # the point of preload: torch is already imported when the script starts
        assert probe["torch_preloaded"] is (start == "preload")


@pytest.mark.parametrize("start", ["preload", "exec"])
def test_exit_code_of_the_script_is_the_workers(
    start: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setenv("EXIT_RANK", "1")
    monkeypatch.setenv("EXIT_CODE", "5")
    argv = ["--standalone", "--nproc-per-node", "2", "--worker-start", start, str(HERE / "worker_probe.py")]
    assert cli.entry(argv) == ExitCode.USER_ERROR
    assert "rank 1 failed with exit code 5" in caplog.text
    # the failure is logged without a traceback: formatting one makes torch import torch._dynamo,
    # seconds on a busy node right on the recovery path (worker.py)
    failures = [r for r in caplog.records if r.name.endswith("multiprocessing.api") and r.levelno >= 40]
    assert failures and all(r.exc_info is None for r in failures)

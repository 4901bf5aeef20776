"""The CLI: torchrun's flags, PET_* variables, and clear errors for bad configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from elasticjob_api.exitcodes import ExitCode
from elasticjob_launcher import cli

TORCHRUN_FLAGS = [
    "--nnodes", "--nproc-per-node", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id", "--rdzv-conf",
    "--standalone", "--max-restarts", "--monitor-interval", "--role", "--module", "--no-python",
    "--log-dir", "--redirects", "--tee", "--local-addr", "--numa-binding",
]  # fmt: skip


def test_help_lists_torchrun_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in TORCHRUN_FLAGS:
        assert flag in out, flag
    assert "PET_NPROC_PER_NODE" in out


def test_flags_parse_into_config() -> None:
    config = cli.parse_config(
        ["--nnodes", "2:4", "--nproc_per_node", "3", "--rdzv-endpoint", "store:29400", "--rdzv-conf",
         "join_timeout=5,last_call_timeout=1", "--max-restarts", "2", "-m", "pkg.train", "--lr", "0.1"]
    )  # fmt: skip
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (2, 4, 3)
    assert config.rdzv_conf == {"join_timeout": "5", "last_call_timeout": "1"}
    _, args = config.entrypoint()
    assert args[-4:] == ["-m", "pkg.train", "--lr", "0.1"]


def test_environment_provides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PET_NNODES", "1:3")
    monkeypatch.setenv("PET_NPROC_PER_NODE", "2")
    monkeypatch.setenv("PET_RDZV_ENDPOINT", "job-rdzv:29400")
    monkeypatch.setenv("PET_MAX_RESTARTS", "5")
    monkeypatch.setenv("PET_NUMA_BINDING", "none")
    config = cli.parse_config(["--no-python", "python", "train.py"])
    assert (config.min_nodes, config.max_nodes, config.max_restarts) == (1, 3, 5)
    assert config.rdzv_endpoint == "job-rdzv:29400" and config.numa_binding == "none"
    assert config.entrypoint() == ("python", ["train.py"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nnodes", "3:2", "--standalone", "t.py"], None),
        (["--nnodes", "3:2", "--rdzv-endpoint", "h:1", "t.py"], "MIN <= MAX"),
        (["--nnodes", "a:b", "--rdzv-endpoint", "h:1", "t.py"], "N or MIN:MAX"),
        (["--nproc-per-node", "0", "--standalone", "t.py"], ">= 1"),
        (["--rdzv-backend", "etcd", "--rdzv-endpoint", "h:1", "t.py"], "must be one of c10d, elasticjob"),
        (["t.py"], "--rdzv-endpoint HOST:PORT is required"),
        (["--rdzv-conf", "oops", "--standalone", "t.py"], "key=value"),
        (["--module", "--no-python", "--standalone", "t.py"], "cannot be used together"),
        (["--redirects", "9", "--standalone", "t.py"], "--redirects must be one of"),
    ],
)
def test_bad_configuration_is_a_clear_error(
    argv: list[str], message: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if message is None:  # --standalone forces a single node, whatever --nnodes said
        assert cli.parse_config(argv).max_nodes == 1
        return
    assert cli.main(argv) == ExitCode.CONFIG_ERROR
    assert message in capsys.readouterr().err


def test_standalone_two_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUT", str(tmp_path))
    script = Path(__file__).with_name("train_check.py")
    assert cli.main(["--standalone", "--nproc-per-node", "2", str(script)]) == 0
    assert sorted(p.name for p in tmp_path.glob("rank*.json")) == ["rank0.json", "rank1.json"]

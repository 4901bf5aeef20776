"""The CLI: torchrun's flags and PET_* variables into a LaunchConfig, clear errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from elasticjob_api.exitcodes import ExitCode
from elasticjob_launcher import cli, worker
from elasticjob_launcher.config import LaunchConfig
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from .conftest import LAUNCH, Procs, free_port

SCRIPT = Path(__file__).with_name("train_check.py")


def parse(argv: list[str]) -> tuple[LaunchConfig, object, list[str]]:
    return cli.config_from_args(cli.build_parser().parse_args(argv))


def test_flags_parse_into_config() -> None:
    config, cmd, args = parse(
        ["--nnodes", "2:4", "--nproc_per_node", "3", "--rdzv-backend", "c10d", "--rdzv-endpoint", "store:29400",
         "--rdzv-conf", "join_timeout=5,last_call_timeout=1", "--max-restarts", "2", "-m", "pkg.train", "--lr", "0.1"]
    )  # fmt: skip
    assert (config.min_nodes, config.max_nodes, config.nproc_per_node) == (2, 4, 3)
    assert config.rdzv_configs == {"join_timeout": "5", "last_call_timeout": "1", "timeout": 900}
    assert (cmd, args) == (sys.executable, ["-u", "-m", "pkg.train", "--lr", "0.1"])


def test_environment_provides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"PET_NNODES": "1:3", "PET_NPROC_PER_NODE": "2", "PET_RDZV_BACKEND": "elasticjob",
                        "PET_RDZV_ENDPOINT": "job-rdzv:29400", "PET_MAX_RESTARTS": "5", "PET_NO_PYTHON": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    config, cmd, args = parse(["python", "train.py"])
    assert (config.min_nodes, config.max_nodes, config.max_restarts) == (1, 3, 5)
    assert (config.rdzv_backend, config.rdzv_endpoint) == ("elasticjob", "job-rdzv:29400")
    assert (cmd, args) == ("python", ["train.py"])


def test_one_node_without_rendezvous_flags_is_standalone() -> None:
    config, _, _ = parse([str(SCRIPT)])
    assert config.standalone and config.rdzv_backend == "c10d" and config.run_id != "none"


def test_static_rendezvous_from_master_flags() -> None:
    config, _, _ = parse(["--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port", "2950",
                          str(SCRIPT)])  # fmt: skip
    assert (config.rdzv_backend, config.rdzv_endpoint, config.node_rank) == ("static", "10.0.0.1:2950", 1)


def test_run_path_is_a_function_entrypoint() -> None:
    _, cmd, args = parse(["--run-path", "--standalone", "/abs/t.py", "--x"])
    assert (cmd, args) == (worker.run_script_path, ["/abs/t.py", "--x"])


def test_project_variables_and_their_deprecated_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELASTICJOB_WORKER_START", "exec")
    assert parse(["--standalone", "t.py"])[0].worker_start == "exec"
    monkeypatch.delenv("ELASTICJOB_WORKER_START")
    monkeypatch.setenv("PET_STORE_WAIT_TIMEOUT", "7")
    with pytest.warns(DeprecationWarning, match="ELASTICJOB_STORE_WAIT_TIMEOUT"):
        assert parse(["--standalone", "t.py"])[0].store_wait_timeout == 7


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nnodes", "3:2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "h:1", "t.py"], "MIN <= MAX"),
        (["--nnodes", "a:b", "--rdzv-endpoint", "h:1", "t.py"], "N or MIN:MAX"),
        (["--nproc-per-node", "0", "--standalone", "t.py"], ">= 1"),
        (["--nproc-per-node", "many", "--standalone", "t.py"], "integer, auto, cpu, gpu or xpu"),
        (["--rdzv-backend", "etcd", "--rdzv-endpoint", "h:1", "t.py"], "etcd backends are not supported"),
        (["--nnodes", "2", "--rdzv-backend", "c10d", "t.py"], "--rdzv-endpoint HOST:PORT is required"),
        (["--nnodes", "1:2", "--master-port", "29500", "t.py"], "static needs a fixed --nnodes"),
        (["--nnodes", "2", "--node-rank", "2", "--master-port", "29500", "t.py"], "--node-rank must be in [0, 2)"),
        (["--rdzv-conf", "oops", "--standalone", "t.py"], "key=value"),
        (["--module", "--no-python", "--standalone", "t.py"], "cannot be used together"),
        (["--redirects", "9", "--standalone", "t.py"], "--redirects and --tee"),
        (["--logs-specs", "nope", "--standalone", "t.py"], "torchrun.logs_specs[nope]"),
    ],
)
def test_bad_configuration_is_a_clear_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.entry(argv) == ExitCode.CONFIG_ERROR
    assert message in capsys.readouterr().err


def test_an_agent_inside_a_pods_worker_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "outer")
    monkeypatch.setenv("ELASTICJOB_POD_NAME", "job-worker-0")
    assert cli.entry(["--standalone", "t.py"]) == ExitCode.CONFIG_ERROR
    assert "exactly one" in capsys.readouterr().err


def test_main_is_torchs_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main() returns nothing on success and raises ChildFailedError on failure; entry() gives the codes."""
    monkeypatch.setenv("OUT", str(tmp_path))
    cli.main(["--nproc-per-node", "2", str(SCRIPT)])  # returns None, as torch's
    assert sorted(p.name for p in tmp_path.glob("rank*.json")) == ["rank0.json", "rank1.json"]
    monkeypatch.setenv("FAIL_ONCE_RANK", "1")
    with pytest.raises(ChildFailedError) as info:
        cli.main(["--nproc-per-node", "2", str(SCRIPT)])
    assert list(info.value.failures) == [1] and info.value.failures[1].exitcode == 7
    assert cli.entry(["--nproc-per-node", "2", str(SCRIPT)]) == ExitCode.USER_ERROR


def test_static_rendezvous_two_nodes(procs: Procs) -> None:
    """torchrun's --master-addr/--master-port/--node-rank form: node 0 hosts the store."""
    port = free_port()

    def node(rank: int) -> subprocess.Popen[bytes]:
        flags = ["--nnodes", "2", "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port)]
        return procs.start([*LAUNCH, *flags, "--nproc-per-node", "2", str(SCRIPT)], f"node{rank}")

    nodes = [node(1), node(0)]
    assert [procs.wait(n) for n in nodes] == [0, 0]
    results = procs.results()
    assert sorted(results) == [0, 1, 2, 3] and {r["sum"] for r in results.values()} == {6.0}

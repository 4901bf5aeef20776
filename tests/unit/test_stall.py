"""Stall detection's pure parts: the config and flag, the NCCL defaults, the slot encoding, the verdicts."""

from __future__ import annotations

import faulthandler
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elasticjob_api.models import LastFailure
from elasticjob_launcher import cli, progress, reporter, stall
from elasticjob_launcher.config import LaunchConfig


def _config(stall_timeout: object, monitor_interval: float = 0.1) -> LaunchConfig:
    return LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=1, standalone=True, monitor_interval=monitor_interval,
        stall_timeout=stall_timeout,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, None), (0.0, None), (3, 3.0), (2.5, 2.5)])
def test_stall_timeout_is_off_by_default_and_zero_means_off(value: float | None, expected: float | None) -> None:
    assert _config(value).stall_timeout == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "must be 0 (off) or at least 1 seconds, got -1"),
        (0.5, "must be 0 (off) or at least 1 seconds, got 0.5"),
        (float("nan"), "must be a number of seconds"),
        (float("inf"), "must be a number of seconds"),
        ("3", "must be a number of seconds"),
        (True, "must be a number of seconds"),
    ],
)
def test_bad_stall_timeouts_are_clear_errors(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="--stall-timeout " + message.replace("(", r"\(").replace(")", r"\)")):
        _config(value)


def test_stall_timeout_must_exceed_the_monitor_interval() -> None:
    with pytest.raises(ValueError, match=r"must be longer than --monitor-interval \(2s\)"):
        _config(2, monitor_interval=2)


def test_the_flag_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    def config(*flags: str) -> LaunchConfig:
        return cli.config_from_args(cli.build_parser().parse_args(["--standalone", *flags, "train.py"]))[0]

    assert config().stall_timeout is None
    assert config("--stall-timeout", "30").stall_timeout == 30.0
    monkeypatch.setenv("ELASTICJOB_STALL_TIMEOUT", "45")
    assert config().stall_timeout == 45.0
    assert config("--stall-timeout", "0").stall_timeout is None  # the flag wins over the variable
    with pytest.raises(ValueError, match="--stall-timeout must be 0"):
        config("--stall-timeout", "-5")


def test_nccl_defaults_only_where_the_user_set_nothing() -> None:
    assert stall.nccl_environment(None, {}, "/d", cuda=True) == {}
    cpu = stall.nccl_environment(30, {}, "/d", cuda=False)
    assert cpu == {
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "3",
        "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": str(2 * 30 + 60),
        "TORCH_FR_BUFFER_SIZE": "2000",
    }
    gpu = stall.nccl_environment(2.5, {}, "/d", cuda=True)
    assert gpu["TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC"] == "65"  # ceil(2 * 2.5) + 60: after this detector
    assert gpu["TORCH_FR_DUMP_ON_TIMEOUT"] == "1" and gpu["TORCH_FR_DUMP_TEMP_FILE"] == "/d/nccl_trace_rank_"
    user = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "TORCH_NCCL_TRACE_BUFFER_SIZE": "0", "TORCH_FR_DUMP_TEMP_FILE": "x"}
    kept = stall.nccl_environment(30, user, "/d", cuda=True)
    assert set(kept) == {"TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC", "TORCH_FR_DUMP_ON_TIMEOUT"}  # older names count too


def _slot() -> tuple[progress.Slot, bytearray]:
    buf = bytearray(progress.SLOT_SIZE)
    return progress.Slot(buf, progress.FLAG_STACK_DUMP), buf


def test_slot_encoding_round_trips() -> None:
    assert progress.decode(bytearray(progress.SLOT_SIZE)) is None  # a fresh file: no worker yet
    slot, buf = _slot()
    before = time.monotonic()
    slot.step()
    slot.step(41)
    slot.step()
    slot.enter(progress.OPS.index("all_gather_into_tensor"))
    state = progress.decode(buf)
    assert state is not None and state.flags == progress.FLAG_STACK_DUMP and state.step == 42
    assert state.op_name == "all_gather_into_tensor" and before <= state.alive <= state.entered
    slot.leave()
    slot.checkpoint(1.5)
    slot.checkpoint(2.0)
    state = progress.decode(buf)
    assert state is not None and state.entered == 0 and state.left >= state.entered
    assert (state.checkpoints, state.checkpoint_seconds, state.step) == (2, 3.5, 42)
    assert progress.SlotState(0, 1, 0, 0, 0, 0, 999, 0, 0).op_name == "op 999"


def test_the_progress_api_is_a_no_op_outside_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "_this", progress._Process())
    monkeypatch.delenv(progress.DIR_VARIABLE, raising=False)
    for n in range(1000):
        progress.step(n)
    progress.checkpoint(1.0)
    assert progress._this.looked and progress._this.slot is None
    assert progress.install() is False


def test_the_worker_maps_the_agents_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's fresh file, the worker's `step()` through the mapping, the agent's read (one process here)."""
    monitor = stall.StallMonitor(str(tmp_path), timeout=5)
    monitor.reset(2)
    assert monitor.states() == {0: None, 1: None}
    monkeypatch.setattr(progress, "_this", progress._Process())
    registered: list[object] = []
    monkeypatch.setattr(faulthandler, "register", lambda signum, **kw: registered.append(signum))
    slot = progress.open_slot({progress.DIR_VARIABLE: str(tmp_path), "LOCAL_RANK": "1"})
    assert slot is not None and registered == [progress.STACK_SIGNAL]
    for _ in range(10_000):
        progress.step()
    state = monitor.states()[1]
    assert state is not None and state.step == 10_000 and state.flags & progress.FLAG_STACK_DUMP
    assert monitor.check(now=state.alive + 4) == []
    assert [s.local_rank for s in monitor.check(now=state.alive + 6)] == [1]
    monitor.reset(2)  # a new round: fresh files, the old mapping writes to the old inode
    progress.step()
    assert monitor.states()[1] is None
    monitor.remove()
    assert not tmp_path.exists()


def _state(*, step: int = 0, alive: float = 0, entered: float = 0, left: float = 0, op: str = "") -> progress.SlotState:
    return progress.SlotState(0, 100, step, alive, entered, left, progress.OPS.index(op), 0, 0.0)


def test_verdicts() -> None:
    now, timeout = 1000.0, 10.0
    states = {
        0: None,  # not started
        1: _state(left=900),  # collectives long ago, no step ever reported: not watched outside collectives
        2: _state(step=5, alive=995, entered=985, op="all_reduce"),  # in all_reduce for 15 s
        3: _state(step=5, alive=985, left=950),  # stepped 15 s ago: outside any collective
        4: _state(step=5, alive=980, left=995),  # a collective exit 5 s ago is a sign of life
        5: _state(step=5, alive=980, entered=995, op="barrier"),  # in a barrier for 5 s
        6: _state(entered=970, op="Work.wait"),  # waited 30 s, no step needed
    }
    found = stall.find_stalls(states, now, timeout)
    assert [(s.local_rank, s.op, s.step) for s in found] == [(3, "", 5), (6, "Work.wait", None), (2, "all_reduce", 5)]
    assert found[0].where() == "outside any collective" and found[1].where() == "in Work.wait"
    assert found[0].seconds == pytest.approx(15)


DUMP = """Thread 0x00007f0000000002 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 320 in wait

Current thread 0x00007f0000000001 (most recent call first):
  File "/x/progress.py", line 251 in stamped
  File "/x/distributed_c10d.py", line 4181 in all_reduce
  File "train.py", line 36 in <module>
"""


def test_the_report_leads_with_the_rank_and_its_main_stack() -> None:
    s = stall.Stall(local_rank=1, pid=7, seconds=12.34, op="all_reduce", step=None)
    other = stall.Stall(local_rank=0, pid=6, seconds=11.0, op="", step=4)
    report = stall.StallReport(global_rank=9, stall=s, timeout=10, stacks={1: DUMP}, others=[(8, other)])
    message = report.message(2048)
    lines = message.splitlines()
    assert (
        lines[0]
        == "rank 9 (local 1, pid 7) stalled in all_reduce for 12.3s, before any reported step (stall timeout 10s)"
    )
    assert lines[1] == "also stalled: rank 8 outside any collective 11.0s"
    assert lines[2].startswith("Current thread") and 'train.py", line 36 in <module>' in message
    assert "threading.py" not in message  # only the thread that runs the script
    assert len(report.message(100)) == 100 and report.message(100).endswith("...")
    assert "threading.py" in report.log_text() and report.log_text().startswith("HANG: rank 9 ")
    entry = reporter.hang_entry(9, message, step=None, stalled_seconds=s.seconds, time="T")
    assert entry == {
        "globalRank": 9, "failureClass": "Hang", "message": message, "stalledSeconds": 12.3, "time": "T",
    }  # fmt: skip
    assert LastFailure.model_validate(entry).step is None


def test_kill_escalates_to_sigkill_for_a_process_that_ignores_sigterm() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
    stubborn = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    polite = subprocess.Popen(
        [sys.executable, "-c", "import time; print(1, flush=True); time.sleep(60)"], stdout=subprocess.PIPE
    )
    for proc in (stubborn, polite):
        assert proc.stdout is not None and proc.stdout.readline()
    sent = stall.kill([stubborn.pid, polite.pid], grace=0.5)
    assert sent == {stubborn.pid: signal.SIGKILL, polite.pid: signal.SIGTERM}
    assert stubborn.wait(5) == -signal.SIGKILL and polite.wait(5) == -signal.SIGTERM

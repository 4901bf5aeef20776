"""Status reporting: the payload, and that an unreachable API never hurts training."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from elasticjob_launcher import reporter


def test_payload_is_a_merge_patch_of_this_pods_entry() -> None:
    failure = reporter.failure_entry(3, -9, "x" * 5000, time="T")
    entry = reporter.worker_entry(restarts=2, round_=4, world_size=8, node_rank=1, failure=failure, time="T")
    body = reporter.patch_body("job-worker-1", entry)
    got = body["status"]["restarts"]["workers"]["job-worker-1"]
    assert got["restarts"] == 2 and got["round"] == 4 and got["worldSize"] == 8 and got["nodeRank"] == 1
    assert got["lastFailure"]["failureClass"] == "Signal"
    assert len(got["lastFailure"]["message"]) == reporter.MESSAGE_LIMIT


def test_no_job_configured_disables_reporting_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    target, reason = reporter.target_from_env({})
    assert target is None and "no ElasticJob configured" in reason
    with caplog.at_level(logging.WARNING):
        r = reporter.Reporter(target, reason)
        r.report({"restarts": 1})
        r.close()
    assert [rec.message for rec in caplog.records] == [f"status reporting disabled: {reason}"]


def test_unreachable_api_warns_once_and_returns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "token").write_text("t")
    env = {
        "ELASTICJOB_NAMESPACE": "ns", "ELASTICJOB_NAME": "job", "ELASTICJOB_POD_NAME": "job-worker-0",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1",
    }  # fmt: skip
    target, _ = reporter.target_from_env(env, sa_dir=tmp_path)
    assert target is not None and target.url.endswith("/namespaces/ns/elasticjobs/job/status")
    with caplog.at_level(logging.WARNING):
        r = reporter.Reporter(target, timeout=1)
        for i in range(3):
            r.report({"restarts": i})
        r.close(wait=10)
    warnings = [rec for rec in caplog.records if "status report" in rec.message]
    assert len(warnings) == 1
    assert r.sent == 0


def test_a_recorded_error_is_reported_as_text() -> None:
    """torchelastic's error-file dict becomes the error line and the traceback's last lines, not a repr."""
    stack = "Traceback (most recent call last):\n" + "".join(
        f'  File "t.py", line {n}, in f{n}\n    g()\n' for n in range(5)
    )
    error = {
        "message": "ValueError: broke",
        "extraInfo": {"py_callstack": stack + "ValueError: broke\n", "timestamp": "1"},
    }
    text = reporter.failure_text(error)
    assert text.splitlines()[0] == "ValueError: broke"
    assert text.splitlines()[1:] == stack.strip().splitlines()[-reporter.TRACEBACK_LINES :]
    assert "{" not in text and "extraInfo" not in text
    assert reporter.failure_text("plain stderr") == "plain stderr"


class _Recording(reporter.Reporter):
    """A sink that keeps what the launcher reports instead of sending it."""

    def __init__(self) -> None:
        super().__init__(None, "recording")
        self.entries: list[dict[str, object]] = []

    def report(self, entry: dict[str, object]) -> None:
        self.entries.append(entry)


def test_a_real_launch_report_round_trips_through_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a launch reports parses as the API's WorkerReport with no field dropped (it ignores unknown ones)."""
    from elasticjob_api.models import WorkerReport
    from elasticjob_launcher.api import LaunchConfig
    from elasticjob_launcher.launch import launch_agent

    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setenv("FAIL_ONCE_RANK", "1")
    sink = _Recording()
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=2, standalone=True, max_restarts=1)
    launch_agent(config, sys.executable, ["-u", str(Path(__file__).with_name("train_check.py"))], sink=sink)
    assert [e["restarts"] for e in sink.entries] == [0, 1, 1]  # round 1, its failure, round 2
    failure = sink.entries[1]["lastFailure"]
    assert isinstance(failure, dict) and failure["exitCode"] == 7 and failure["globalRank"] == 1
    aliases = {f.alias or name for name, f in WorkerReport.model_fields.items()}
    for entry in sink.entries:
        assert set(entry) <= aliases
        assert WorkerReport.model_validate(entry).model_dump(by_alias=True, mode="json", exclude_unset=True) == entry

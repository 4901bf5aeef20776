"""Status reporting: the payload, and that an unreachable API never hurts training."""

from __future__ import annotations

import logging
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

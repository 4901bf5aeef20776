"""Failure classification from pod and container statuses."""

from __future__ import annotations

from typing import Any

import pytest
from elasticjob_api.exitcodes import ExitCode
from elasticjob_api.models import FailureClass
from elasticjob_operator.failures import classify_exit, classify_pod


@pytest.mark.parametrize(
    ("exit_code", "reason", "expected"),
    [
        (ExitCode.USER_ERROR, "Error", FailureClass.USER_ERROR),
        (1, "Error", FailureClass.USER_ERROR),
        (137, "OOMKilled", FailureClass.OOM_KILLED),
        (137, "Error", FailureClass.SIGNAL),
        (ExitCode.STORE_UNREACHABLE, "Error", FailureClass.STORE_LOST),
        (ExitCode.RENDEZVOUS_TIMEOUT, "Error", FailureClass.TIMEOUT),
        (ExitCode.INFRASTRUCTURE, "Error", FailureClass.INFRASTRUCTURE),
        (ExitCode.DRAINED, "Error", FailureClass.SIGNAL),
        (None, "Evicted", FailureClass.SIGNAL),
        (None, "DeadlineExceeded", FailureClass.TIMEOUT),
        (None, None, FailureClass.INFRASTRUCTURE),
    ],
)
def test_classify_exit(exit_code: int | None, reason: str | None, expected: FailureClass) -> None:
    assert classify_exit(exit_code, reason) == expected


def test_classify_pod_reads_the_trainer_container() -> None:
    pod: dict[str, Any] = {
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "sidecar", "state": {"terminated": {"exitCode": 0}}},
                {"name": "trainer", "state": {"terminated": {"exitCode": 3, "message": "ZeroDivisionError"}}},
            ],
        }
    }
    failure = classify_pod(pod)
    assert failure.failure_class == FailureClass.USER_ERROR
    assert failure.exit_code == 3 and failure.message == "ZeroDivisionError"
    # a PyTorchJob's template: the container `pytorch` is the trainer
    pod["status"]["containerStatuses"][1]["name"] = "pytorch"
    assert classify_pod(pod).exit_code == 3


def test_classify_pod_node_lost_and_evicted() -> None:
    assert classify_pod({"spec": {"nodeName": "n1"}}, node_lost=True).failure_class == FailureClass.NODE_LOST
    evicted = {"status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory"}}
    failure = classify_pod(evicted)
    assert failure.failure_class == FailureClass.SIGNAL and failure.message == "low on memory"

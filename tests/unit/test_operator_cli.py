"""The operator's command line: its log filter for kopf's per-tick timer lines, and the settings
it hands the handlers through kopf's memo."""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest
from elasticjob_operator import cli, kube
from elasticjob_operator.cli import QuietTimers


def test_timer_success_lines_are_dropped_and_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.quiet-timers")
    logger.addFilter(QuietTimers())
    with caplog.at_level(logging.INFO, logger="test.quiet-timers"):
        logger.info("Timer 'reconcile_timer' succeeded.")
        logger.info("created Pod mnist-worker-0")
        logger.info("Handler 'reconcile_now' succeeded.")
        logger.error("Timer 'reconcile_timer' failed with an exception and will try again in 2.0 seconds: boom")
        logger.warning("Timer 'reconcile_timer' succeeded.")
    assert [r.getMessage() for r in caplog.records] == [
        "created Pod mnist-worker-0",
        "Handler 'reconcile_now' succeeded.",
        "Timer 'reconcile_timer' failed with an exception and will try again in 2.0 seconds: boom",
        "Timer 'reconcile_timer' succeeded.",
    ]


class _NoKube:
    """Stands in for the API clients: main() builds one before kopf runs."""

    def __init__(self, limiter: object) -> None:
        self.api = None
        self.observe = None


@pytest.mark.parametrize(("argv", "expected"), [([], True), (["--no-store-network-policy"], False),
                                                (["--store-network-policy"], True)])  # fmt: skip
def test_store_network_policy_is_on_by_default_and_reaches_the_handlers_memo(
    argv: list[str], expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: ran.update(kwargs))
    monkeypatch.setattr(kube, "Kube", _NoKube)
    for name in ("ELASTICJOB_RECONCILE_INTERVAL", "ELASTICJOB_NODE_LOST_GRACE_SECONDS"):
        monkeypatch.setenv(name, "2")  # main() writes them; monkeypatch restores them
    probes_off = ["--metrics-bind-address=0", "--health-probe-bind-address=0"]
    assert cli.main([*probes_off, *argv]) == 0
    assert ran["memo"].store_network_policy is expected

"""The operator's command line: its log filter for kopf's per-tick timer lines."""

from __future__ import annotations

import logging

import pytest
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

"""The operator's command line: its log filter for kopf's per-tick timer lines, and the settings
it hands the handlers through kopf's memo."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
import pytest
from elasticjob_operator import cli, handlers, kube
from elasticjob_operator.cli import QuietTimers
from kopf._core.intents.handlers import TimerHandler  # kopf exports no name for its timers' handlers


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
    probes_off = ["--metrics-bind-address=0", "--health-probe-bind-address=0"]
    assert cli.main([*probes_off, *argv]) == 0
    assert ran["memo"].options.store_network_policy is expected


def intervals(registry: kopf.OperatorRegistry) -> list[float | None]:
    """The timers' intervals on a registry (kopf keeps timers and daemons in `_spawning`)."""
    return [h.interval for h in registry._spawning.get_all_handlers() if isinstance(h, TimerHandler)]


def test_settings_reach_the_registry_and_the_memo_and_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: ran.update(kwargs))
    monkeypatch.setattr(kube, "Kube", _NoKube)
    before = dict(os.environ)
    argv = ["--metrics-bind-address=0", "--health-probe-bind-address=0", "--reconcile-interval=5",
            "--node-lost-grace-seconds=12", "--max-workers=3"]  # fmt: skip
    assert cli.main(argv) == 0
    assert dict(os.environ) == before
    assert ran["memo"].options == handlers.Options(reconcile_interval=5, node_lost_grace_seconds=12, max_workers=3)
    assert intervals(ran["registry"]) == [5]


def test_two_operators_with_other_settings_in_one_process() -> None:
    fast, slow = handlers.registry(handlers.Options(reconcile_interval=1)), handlers.registry(handlers.Options())
    assert intervals(fast) == [1] and intervals(slow) == [2]
    assert {h.id for h in fast._indexing.get_all_handlers()} == {h.id for h in slow._indexing.get_all_handlers()}
    # without a login activity kopf has no credentials on an explicit registry
    assert kopf.login_via_client in [h.fn for h in fast._activities.get_all_handlers()]


@pytest.mark.parametrize(
    ("field", "value"), [("reconcile_interval", 0), ("node_lost_grace_seconds", -1), ("max_workers", 0)]
)
def test_bad_options_are_refused_with_the_setting_named(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0].replace("node", "node-lost")):
        handlers.Options(**{field: value})  # type: ignore[arg-type]

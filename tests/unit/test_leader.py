"""Leader election's pure parts: the settings' checks, when a lease may be taken, the spec written.

The election against a real apiserver, and failover of the chart's two replicas, are in
tests/e2e/test_ha.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from elasticjob_operator.cli import build_parser
from elasticjob_operator.leader import ElectionSettings, Record, may_take, next_spec
from kubernetes import client

SETTINGS = ElectionSettings(name="ej", namespace="system", identity="op-a_1")
T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lease_duration": 10, "renew_deadline": 10}, "must be longer than the renew deadline"),
        ({"renew_deadline": 2, "retry_period": 2}, "must be longer than 1.2 x the retry period"),
        ({"retry_period": 0}, "must be > 0"),
        ({"identity": ""}, "needs a lease name, a namespace and an identity"),
    ],
)
def test_settings_say_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ElectionSettings(**{"name": "ej", "namespace": "system", "identity": "op-a_1", **kwargs})  # type: ignore[arg-type]


def test_a_held_lease_is_free_only_after_its_duration_on_our_clock() -> None:
    held = Record(holder="op-b_2", duration=15, renew_time="2026-12-02T00:00:00Z", transitions=3)
    assert not may_take(held, "op-a_1", observed_at=100.0, now=114.9)
    assert may_take(held, "op-a_1", observed_at=100.0, now=115.0)
    assert may_take(held, "op-b_2", observed_at=100.0, now=100.0)  # our own: renew
    released = Record(holder="", duration=1, renew_time=None, transitions=3)
    assert may_take(released, "op-a_1", observed_at=100.0, now=100.0)


def test_taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() -> None:
    theirs = client.V1LeaseSpec(holder_identity="op-b_2", acquire_time=T0, renew_time=T0, lease_transitions=3)
    taken = next_spec(theirs, SETTINGS, T0.replace(minute=5))
    assert (taken.holder_identity, taken.lease_transitions, taken.acquire_time) == ("op-a_1", 4, T0.replace(minute=5))
    assert taken.lease_duration_seconds == 15
    renewed = next_spec(taken, SETTINGS, T0.replace(minute=6))
    assert (renewed.lease_transitions, renewed.acquire_time, renewed.renew_time) == (
        4, T0.replace(minute=5), T0.replace(minute=6),
    )  # fmt: skip
    first = next_spec(None, SETTINGS, T0)
    assert (first.holder_identity, first.lease_transitions) == ("op-a_1", 0)


def test_flags_take_controller_runtime_names_and_kubernetes_durations() -> None:
    opts = build_parser().parse_args(
        ["--leader-elect", "--leader-elect-lease-duration=1m30s", "--leader-elect-retry-period=500ms",
         "--health-probe-bind-address=:9443"]
    )  # fmt: skip
    assert opts.leader_elect is True
    assert (opts.leader_elect_lease_duration, opts.leader_elect_retry_period) == (90.0, 0.5)
    assert opts.leader_elect_renew_deadline == 10.0
    assert opts.health_probe_bind_address == ":9443"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--leader-elect-lease-duration=fifteen"])

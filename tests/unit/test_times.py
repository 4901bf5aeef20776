"""The one metav1.Time format of the API (elasticjob_api.times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from elasticjob_api.times import format_time, now_text, parse_time


def test_round_trip_in_utc_whole_seconds() -> None:
    t = datetime(2026, 12, 2, 5, 36, 7, 900000, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(t) == "2026-12-02T03:36:07Z"
    assert parse_time(format_time(t)) == t.replace(microsecond=0)
    assert abs(parse_time(now_text()) - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize("text", ["2026-12-02T03:36:07.5Z", "2026-12-02 03:36:07", "yesterday"])
def test_other_forms_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="does not match format"):
        parse_time(text)

"""Kubernetes timestamps (metav1.Time): RFC 3339 in UTC, whole seconds, `Z`; one format for every side.

The status the launcher writes, the planner's conditions and restarts, and the node times the
operator reads all use `format_time` and `parse_time`.
Limits: fractions of a second are dropped on writing and refused on reading, as metav1.Time does
(MicroTime, with its fraction, is not used in the ElasticJob API).
"""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(t: datetime) -> str:
    """`t` (aware, any zone) as metav1.Time writes it."""
    return t.astimezone(UTC).strftime(FORMAT)


def parse_time(text: str) -> datetime:
    """A metav1.Time string → an aware UTC datetime; ValueError if it is not one."""
    return datetime.strptime(text, FORMAT).replace(tzinfo=UTC)


def now_text() -> str:
    """The current time as metav1.Time."""
    return format_time(datetime.now(UTC))

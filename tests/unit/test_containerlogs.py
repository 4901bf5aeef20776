"""The CRI log format the local cluster writes and reads back for `kubectl logs`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticjob_localcluster import containerlogs as cl

T0 = datetime(2026, 12, 2, 4, 0, 0, tzinfo=UTC)


def rec(seconds: int, text: str, partial: bool = False) -> cl.Record:
    at = T0 + timedelta(seconds=seconds)
    return cl.Record(at, cl.stamp(at), "stdout", partial, text.encode())


def out(records: list[cl.Record], **options: object) -> bytes:
    return b"".join(cl.select(records, cl.Options(**options)))  # type: ignore[arg-type]


def test_a_real_process_is_written_as_records_with_both_streams(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    code = "import sys; print('a'); sys.stdout.flush(); print('b', file=sys.stderr); sys.stdout.write('no newline')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    writer = cl.LogWriter(path, proc.stdout, proc.stderr)
    proc.wait()
    writer.join(10)
    records = cl.read_records(path.read_bytes())
    assert sorted((r.stream, r.text, r.partial) for r in records) == [
        ("stderr", b"b", False), ("stdout", b"a", False), ("stdout", b"no newline", False),
    ]  # fmt: skip
    assert all(abs(r.at - datetime.now(UTC)) < timedelta(minutes=1) for r in records)


def test_a_long_line_is_split_into_partial_records_and_joined_back(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    r, w = os.pipe()
    e_r, e_w = os.pipe()
    with open(r, "rb") as out_pipe, open(e_r, "rb") as err_pipe:
        writer = cl.LogWriter(path, out_pipe, err_pipe)
        os.write(w, b"x" * (cl.MAX_LINE + 10) + b"\nshort\n")
        os.close(w)
        os.close(e_w)
        writer.join(10)
    records = cl.read_records(path.read_bytes())
    assert [(len(r.text), r.partial) for r in records] == [(cl.MAX_LINE, True), (10, False), (5, False)]
    assert out(records, tail_lines=1) == b"short\n"
    assert out(records, tail_lines=2) == b"x" * (cl.MAX_LINE + 10) + b"\nshort\n"


def test_since_then_tail_then_limit() -> None:
    records = [rec(0, "zero"), rec(5, "five"), rec(10, "ten"), rec(15, "fifteen")]
    assert out(records) == b"zero\nfive\nten\nfifteen\n"
    assert out(records, since=T0 + timedelta(seconds=5)) == b"five\nten\nfifteen\n"
    assert out(records, since=T0 + timedelta(seconds=5), tail_lines=1) == b"fifteen\n"
    assert out(records, tail_lines=0) == b""
    assert out(records, tail_lines=9) == out(records)
    assert out(records, limit_bytes=7) == b"zero\nfi"
    assert out(records[:1], timestamps=True) == b"2026-12-02T04:00:00.000000000Z zero\n"


def test_a_half_written_last_line_is_not_a_record() -> None:
    data = f"{cl.stamp(T0)} stdout F done\n{cl.stamp(T0)} stdout F half".encode()
    assert [r.text for r in cl.read_records(data)] == [b"done"]


@pytest.mark.parametrize(("field", "value"), [("tail_lines", -1), ("limit_bytes", 0)])
def test_bad_options_are_refused_with_the_field_named(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        cl.Options(**{field: value})  # type: ignore[arg-type]


def test_stamps_round_trip() -> None:
    at = datetime(2026, 12, 2, 4, 26, 4, 123456, tzinfo=UTC)
    assert cl.parse_stamp(cl.stamp(at)) == at
    assert cl.parse_stamp("2026-12-02T04:26:04Z") == at.replace(microsecond=0)

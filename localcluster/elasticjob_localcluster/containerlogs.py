"""Container logs in the kubelet's own format: written from a container's pipes, read back for `kubectl logs`.

Layout, as a kubelet keeps it under /var/log/pods:

    <state>/pod-logs/<namespace>_<pod>_<uid>/<container>/<restart>.log

one file per container instance (`restart` is the container's restart count when it started), so
`--previous` is the file before the newest. Each line is a CRI log record:

    2026-12-02T04:26:04.123456789Z stdout F the line's text

`LogWriter` reads a container's stdout and stderr pipes in two threads and appends one record per
line (a line longer than `MAX_LINE` bytes is split into `P` partial records, as containerd does;
text left without a newline at EOF is written as a full record). `read_records` parses a file back
and `select` applies `kubectl logs`' options: `sinceSeconds`/`sinceTime`, `tailLines`,
`timestamps`, `limitBytes`, in the kubelet's order (since, then tail, then the byte limit).
Limits: a record's time is when the agent read the bytes, not when the process wrote them (the
kubelet's runtime has the same skew); stdin is not attached.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

#: containerd's line limit before a record is split into partial (`P`) records
MAX_LINE = 16 * 1024


def log_dir(state: Path, namespace: str, pod: str, uid: str) -> Path:
    return state / "pod-logs" / f"{namespace}_{pod}_{uid}"


def instance_path(pod_logs: Path, container: str, restart: int) -> Path:
    """The log of one instance of a container; `pod_logs` is the pod's `log_dir`."""
    return pod_logs / container / f"{restart}.log"


def instances(pod_logs: Path, container: str) -> list[Path]:
    """The container's instance logs, oldest first."""
    d = pod_logs / container
    if not d.is_dir():
        return []
    return sorted((p for p in d.glob("*.log") if p.stem.isdigit()), key=lambda p: int(p.stem))


def stamp(at: datetime) -> str:
    """RFC 3339 with nanoseconds, as the CRI writes it."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def parse_stamp(text: str) -> datetime:
    """RFC 3339 (with or without a fraction of up to nanoseconds) → an aware datetime."""
    text = text.rstrip("Z")
    base, _, frac = text.partition(".")
    at = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    if frac:
        at = at.replace(microsecond=int(frac[:6].ljust(6, "0")))
    return at


class LogWriter:
    """Append a container's stdout and stderr to `path` as CRI records until both pipes close."""

    def __init__(self, path: Path, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(path, "ab")  # noqa: SIM115 (closed when both pipes are done)
        self._lock = threading.Lock()
        self._open = 2
        self.threads = [
            threading.Thread(target=self._pump, args=(pipe, name), daemon=True, name=f"log-{path.parent.name}-{name}")
            for pipe, name in ((stdout, "stdout"), (stderr, "stderr"))
        ]
        for t in self.threads:
            t.start()

    def _record(self, stream: str, tag: str, text: bytes) -> None:
        line = f"{stamp(datetime.now(UTC))} {stream} {tag} ".encode() + text + b"\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()

    def _pump(self, pipe: IO[bytes], stream: str) -> None:
        pending = b""
        fd = pipe.fileno()
        try:
            while chunk := os.read(fd, 65536):
                pending += chunk
                while True:
                    nl = pending.find(b"\n", 0, MAX_LINE + 1)
                    if nl >= 0:
                        self._record(stream, "F", pending[:nl])
                        pending = pending[nl + 1 :]
                    elif len(pending) > MAX_LINE:
                        self._record(stream, "P", pending[:MAX_LINE])
                        pending = pending[MAX_LINE:]
                    else:
                        break
        except OSError:
            pass
        finally:
            if pending:
                self._record(stream, "F", pending)
            pipe.close()
            with self._lock:
                self._open -= 1
                if self._open == 0:
                    self._out.close()

    def join(self, timeout: float | None = None) -> None:
        for t in self.threads:
            t.join(timeout)


@dataclass(frozen=True)
class Record:
    at: datetime
    stamp: str
    stream: str
    partial: bool
    text: bytes


def parse_line(line: bytes) -> Record | None:
    """One CRI record (its trailing newline removed), or None for a line that is not one."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"F", b"P"):
        return None
    try:
        at = parse_stamp(parts[0].decode())
    except ValueError:
        return None
    return Record(at, parts[0].decode(), parts[1].decode(), parts[2] == b"P", parts[3] if len(parts) == 4 else b"")


def read_records(data: bytes) -> list[Record]:
    """The complete records in `data` (a last line without its newline is still being written)."""
    lines = data.split(b"\n")
    return [r for r in (parse_line(line) for line in lines[:-1]) if r is not None]


@dataclass(frozen=True)
class Options:
    """`kubectl logs`' options as the kubelet's containerLogs endpoint takes them."""

    follow: bool = False
    tail_lines: int | None = None
    since: datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.tail_lines is not None and self.tail_lines < 0:
            raise ValueError(f"tailLines must be at least 0, not {self.tail_lines}")
        if self.limit_bytes is not None and self.limit_bytes < 1:
            raise ValueError(f"limitBytes must be at least 1, not {self.limit_bytes}")


def render(record: Record, timestamps: bool) -> bytes:
    """What `kubectl logs` prints for a record: its text, a newline unless partial, the time if asked."""
    text = record.text if record.partial else record.text + b"\n"
    return (record.stamp.encode() + b" " + text) if timestamps else text


def select(records: list[Record], options: Options) -> Iterator[bytes]:
    """The output for `records` under `options`: since, then the last `tail_lines` lines, then the byte limit."""
    kept = [r for r in records if options.since is None or r.at >= options.since]
    if options.tail_lines is not None:
        # a line is a run of partial records closed by a full one: count full records from the end
        full = 0
        start = len(kept)
        for i in range(len(kept) - 1, -1, -1):
            if not kept[i].partial:
                if full == options.tail_lines:
                    break
                full += 1
            start = i
        kept = kept[start:] if options.tail_lines else []
    budget = options.limit_bytes
    for r in kept:
        out = render(r, options.timestamps)
        if budget is not None:
            if budget <= 0:
                return
            out, budget = out[:budget], budget - len(out)
        yield out

"""Stall detection: the agent's side of progress.py's slots, and the NCCL defaults that go with it.

Purpose: a worker stuck in a collective or blocking wait (a peer that never arrives, a deadlock,
a dead NIC) or, once it reports steps, stuck anywhere, holds the whole job until the backend's
timeout (30 minutes by default, forever for some waits). With `--stall-timeout SECONDS` the
agent notices, says where the worker is stuck, and restarts the group like a worker failure.

Algorithm (`ElasticJobAgent._monitor_workers` runs it every `--monitor-interval`):
1. Before each round's workers start, `StallMonitor.reset` creates a fresh slot file per local
   rank (a new inode: a worker of an earlier round that is still alive writes to its own file).
2. Each check reads the slots (`find_stalls`): a rank inside one wrapped call for longer than
   the timeout ("in all_reduce"), or, once it reported a step, with no step, checkpoint or
   collective exit for longer than the timeout ("outside any collective"), is stalled. Ranks
   stalled outside a collective come first: those in a collective are usually waiting for them.
3. On a stall, before acting: every local rank that registered the stack dump gets SIGUSR1 and
   faulthandler writes its Python stacks to `local<N>.stack`; the agent waits until the files
   stop growing (at most `STACK_WAIT`), and adds the path, size and a text excerpt of the rank's
   NCCL flight-recorder dump if one was written. `StallReport` is logged to stderr and reported as `lastFailure`
   (class `Hang`, with `step` and `stalledSeconds`).
4. Then every local worker gets SIGTERM, and SIGKILL after `KILL_GRACE` (a process blocked in C
   with a Python SIGTERM handler never runs it); the check returns a FAILED result for the rank,
   so the group restarts through the agent's job-wide restart path, counted as a fault.

NCCL (`nccl_environment`, applied to the agent's environment, so only where the user has not set
a variable): `TORCH_NCCL_ASYNC_ERROR_HANDLING=3` (on a collective timeout or error the watchdog
kills the process without `ncclCommAbort`, which can itself hang on a broken communicator; torch's
agent defaults it to 1), `TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC` = twice the stall timeout plus 60 s
(NCCL's own last resort for a stuck watchdog, kept after this detector so the report is written
first), `TORCH_FR_BUFFER_SIZE=2000` (the flight recorder), and when CUDA is present
`TORCH_FR_DUMP_ON_TIMEOUT=1` with `TORCH_FR_DUMP_TEMP_FILE=<progress dir>/nccl_trace_rank_` (the
`TORCH_FR_*` names are those torch 2.15 reads, warning about the older `TORCH_NCCL_*` ones; a
variable the user set under its older name counts as set, `NCCL_ALIASES`). The dumps stay in the
progress directory when the launch ends; the slots and stack files are removed.

Limits: what progress.py's wrappers do not see is not detected unless the script calls
`progress.step()` (its docstring lists them); a stall is seen at most one timeout plus one monitor
interval late, plus the stack wait; a legitimate wait longer than the timeout (a peer loading data
or saving a checkpoint while the others wait in a barrier, a first compilation) is a false
positive, so the timeout must exceed the longest such wait; stacks are Python frames only
(faulthandler; py-spy would add native ones); the flight recorder exists only once NCCL's own
watchdog dumped it, usually after NCCL's collective timeout, so it is often absent.
"""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import os
import signal
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from elasticjob_launcher import progress

log = logging.getLogger(__name__)

#: seconds between SIGTERM and SIGKILL for the stuck group
KILL_GRACE = 2.0
#: the longest wait for the workers' stack dumps
STACK_WAIT = 2.0
#: bytes of a stack dump or a flight-recorder dump read
DUMP_LIMIT = 64 * 1024
NCCL_TRACE_BUFFER_SIZE = 2000
NCCL_DUMP_NAME = "nccl_trace_rank_"


def heartbeat_timeout(stall_timeout: float) -> int:
    """NCCL's heartbeat timeout for a stall timeout: far enough after it that this detector acts first."""
    return math.ceil(2 * stall_timeout) + 60


#: the flight recorder's variables, and the older names torch still reads (with a deprecation warning)
NCCL_ALIASES = {
    "TORCH_FR_BUFFER_SIZE": "TORCH_NCCL_TRACE_BUFFER_SIZE",
    "TORCH_FR_DUMP_ON_TIMEOUT": "TORCH_NCCL_DUMP_ON_TIMEOUT",
    "TORCH_FR_DUMP_TEMP_FILE": "TORCH_NCCL_DEBUG_INFO_TEMP_FILE",
}


def nccl_environment(stall_timeout: float | None, env: Mapping[str, str], directory: str, cuda: bool) -> dict[str, str]:
    """The NCCL variables to add to the workers' environment: the defaults `env` does not set (by either name)."""
    if not stall_timeout:
        return {}
    defaults = {
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "3",
        "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": str(heartbeat_timeout(stall_timeout)),
        "TORCH_FR_BUFFER_SIZE": str(NCCL_TRACE_BUFFER_SIZE),
    }
    if cuda:
        defaults["TORCH_FR_DUMP_ON_TIMEOUT"] = "1"
        defaults["TORCH_FR_DUMP_TEMP_FILE"] = os.path.join(directory, NCCL_DUMP_NAME)
    return {key: value for key, value in defaults.items() if key not in env and NCCL_ALIASES.get(key, key) not in env}


@dataclass(frozen=True)
class Stall:
    """One stalled local rank."""

    local_rank: int
    pid: int
    seconds: float
    op: str  # the call it is in, "" outside any
    step: int | None  # the last step it reported, None if none

    def where(self) -> str:
        return f"in {self.op}" if self.op else "outside any collective"


def find_stalls(states: Mapping[int, progress.SlotState | None], now: float, timeout: float) -> list[Stall]:
    """The stalled ranks, those outside a collective first (the likely cause), then the longest stuck."""
    found = []
    for local_rank, state in states.items():
        if state is None:
            continue
        step = state.step if state.alive > 0 else None
        if state.entered > 0 and now - state.entered > timeout:
            found.append(Stall(local_rank, state.pid, now - state.entered, state.op_name, step))
        elif state.entered == 0 and state.alive > 0 and now - max(state.alive, state.left) > timeout:
            found.append(Stall(local_rank, state.pid, now - max(state.alive, state.left), "", step))
    return sorted(found, key=lambda s: (s.op != "", -s.seconds))


def main_thread_stack(dump: str) -> str:
    """The block of a faulthandler dump that runs the script (its bottom frame is `<module>`)."""
    blocks = [b for b in dump.strip().split("\n\n") if b.strip()]
    for block in blocks:
        if "in <module>" in block:
            return block.strip()
    return blocks[0].strip() if blocks else ""


@dataclass
class StallReport:
    """What is known about a stall before the group is stopped."""

    global_rank: int
    stall: Stall
    timeout: float
    stacks: dict[int, str] = field(default_factory=dict)  # local rank -> faulthandler dump
    others: list[tuple[int, Stall]] = field(default_factory=list)  # (global rank, stall)
    nccl_trace: str = ""

    def summary(self) -> str:
        s = self.stall
        step = f"after step {s.step}" if s.step is not None else "before any reported step"
        return (
            f"rank {self.global_rank} (local {s.local_rank}, pid {s.pid}) stalled {s.where()} for "
            f"{s.seconds:.1f}s, {step} (stall timeout {self.timeout:g}s)"
        )

    def message(self, limit: int) -> str:
        """The status message: the summary, the others, the stuck rank's main stack, the flight recorder."""
        parts = [self.summary()]
        if self.others:
            parts.append("also stalled: " + "; ".join(f"rank {r} {o.where()} {o.seconds:.1f}s" for r, o in self.others))
        stack = main_thread_stack(self.stacks.get(self.stall.local_rank, ""))
        parts.append(stack or "(no Python stack: the worker did not register the stack dump)")
        if self.nccl_trace:
            parts.append("NCCL flight recorder: " + self.nccl_trace)
        text = "\n".join(parts)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def log_text(self) -> str:
        lines = [f"HANG: {self.summary()}; stopping the worker group"]
        lines += [
            f"  also stalled: rank {r} (local {o.local_rank}) {o.where()} for {o.seconds:.1f}s" for r, o in self.others
        ]
        for local_rank, dump in sorted(self.stacks.items()):
            lines.append(f"  Python stacks of local rank {local_rank}:")
            lines += [f"    {line}" for line in dump.rstrip().splitlines()]
        if self.nccl_trace:
            lines.append(f"  NCCL flight recorder: {self.nccl_trace}")
        return "\n".join(lines)


class StallMonitor:
    """The slots of one agent's local workers, in `directory` (the agent's progress directory)."""

    def __init__(self, directory: str, timeout: float, kill_grace: float = KILL_GRACE) -> None:
        self.directory = directory
        self.timeout = timeout
        self.kill_grace = kill_grace
        self._maps: dict[int, mmap.mmap] = {}

    def reset(self, local_world_size: int) -> None:
        """Fresh, zeroed slot files for a new set of workers (step 1 of the module docstring)."""
        self.close()
        for local_rank in range(local_world_size):
            path = progress.slot_path(self.directory, local_rank)
            for old in (path, progress.stack_path(self.directory, local_rank)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, progress.SLOT_SIZE)
                self._maps[local_rank] = mmap.mmap(fd, progress.SLOT_SIZE, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)

    def states(self) -> dict[int, progress.SlotState | None]:
        return {local_rank: progress.decode(m) for local_rank, m in self._maps.items()}

    def check(self, now: float | None = None) -> list[Stall]:
        return find_stalls(self.states(), time.monotonic() if now is None else now, self.timeout)

    def dump_stacks(self, pids: Mapping[int, int], wait: float = STACK_WAIT) -> dict[int, str]:
        """SIGUSR1 to each local rank that registered the dump; {local rank: its stacks}."""
        states = self.states()
        asked = []
        for local_rank, pid in pids.items():
            state = states.get(local_rank)
            if state is None or not state.flags & progress.FLAG_STACK_DUMP or state.pid != pid:
                continue  # no handler: SIGUSR1's default action would kill it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, progress.STACK_SIGNAL)
                asked.append(local_rank)
        sizes: dict[int, int] = {}
        deadline = time.monotonic() + wait
        while asked and time.monotonic() < deadline:
            time.sleep(0.05)
            now = {r: _size(progress.stack_path(self.directory, r)) for r in asked}
            if all(now[r] > 0 and now[r] == sizes.get(r) for r in asked):
                break
            sizes = now
        return {r: _read_tail(progress.stack_path(self.directory, r), DUMP_LIMIT, head=True) for r in asked}

    def nccl_trace(self, global_rank: int, limit: int = 1024) -> str:
        """The flight recorder's dump of a rank, if NCCL wrote one: its path, size and a text excerpt."""
        path = os.path.join(self.directory, f"{NCCL_DUMP_NAME}{global_rank}")
        size = _size(path)
        if size <= 0:
            return ""
        excerpt = _read_tail(path, limit, head=True)
        text = "\ufffd" not in excerpt and all(c.isprintable() or c.isspace() for c in excerpt)
        return f"{path} ({size} bytes)" + (f"\n{excerpt}" if text and excerpt else "")

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()

    def remove(self) -> None:
        """Remove the slot and stack files (flight-recorder dumps stay) and the directory if it is empty."""
        self.close()
        for name in os.listdir(self.directory) if os.path.isdir(self.directory) else []:
            if name.startswith("local"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))
        with contextlib.suppress(OSError):
            os.rmdir(self.directory)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def _read_tail(path: str, limit: int, head: bool = False) -> str:
    try:
        with open(path, "rb") as f:
            if not head:
                f.seek(max(0, _size(path) - limit))
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def kill(pids: Iterable[int], grace: float = KILL_GRACE) -> dict[int, int]:
    """SIGTERM, then SIGKILL after `grace` to those still running; {pid: the last signal sent}."""
    sent: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            sent[pid] = signal.SIGTERM
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in [p for p in sent if _alive(p)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            sent[pid] = signal.SIGKILL
    return sent


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in this process's environment for the block, then the old values back."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def stall_watch(stall_timeout: float | None) -> Iterator[StallMonitor | None]:
    """A launch's monitor, its progress directory and the NCCL defaults in the environment (None: off).

    The environment is the agent's own, read by torch when it starts exec'd workers and by
    `worker.agent_environment` for preloaded ones; it is restored when the launch ends.
    """
    if not stall_timeout:
        yield None
        return
    import torch

    cuda = torch.cuda.is_available()
    directory = tempfile.mkdtemp(prefix="elasticjob-progress-")
    monitor = StallMonitor(directory, stall_timeout)
    try:
        nccl = nccl_environment(stall_timeout, os.environ, directory, cuda=cuda)
        log.info("stall watch: timeout %gs, progress slots in %s, NCCL defaults %s", stall_timeout, directory, nccl)
        with environment({progress.DIR_VARIABLE: directory, **nccl}):
            yield monitor
    finally:
        monitor.remove()

"""Training progress for the launcher's stall detection: `progress.step()` and collective stamps.

    from elasticjob_launcher import progress
    for batch in loader:
        ...
        progress.step()            # or progress.step(global_step); about a microsecond
    progress.checkpoint(12.5)      # a checkpoint took 12.5 s (kept for goodput accounting)

Purpose: let the agent see, from outside, that a worker stopped making progress (stall.py), at
no cost that shows in a training step and with nothing to configure in the script. Outside the
launcher, or with `--stall-timeout` off, every call is a no-op (the first call finds no slot and
each later call returns at once).

Algorithm. The agent creates one fresh 64-byte file per local rank before each round's workers
start, `<ELASTICJOB_PROGRESS_DIR>/local<LOCAL_RANK>` (the directory reaches the workers in their
environment). A worker maps its file once (`open_slot`) and writes, little-endian, at fixed
offsets (`LAYOUT`): a magic and flags (bit 0: a stack dump is registered on SIGUSR1), its pid,
the last step and the time of the last sign of life, the time it entered the collective it is in
(0 when none) and that collective's name (an index into `OPS`), the time it last left one, and
the checkpoint count and seconds. Times are `time.monotonic()`, one clock for every process of a
host. A step is one `pack_into` of two 8-byte fields into the mapping: no system call, no lock.

With no code change, `install()` (called by a preloaded worker before the script runs,
worker.py) wraps torch.distributed's blocking functions (`OPS`) in `torch.distributed` and
`torch.distributed.distributed_c10d`, and `Work.wait`: the outermost call stamps "entered"
before and "left" after. The agent reads the slots (stall.py): a rank inside one call for longer
than the timeout, or, once it reported a step, with no step, checkpoint or collective exit for
longer than the timeout, is stalled. `install()` also registers `faulthandler` on SIGUSR1,
writing every thread's Python stack to `<dir>/local<N>.stack`, which the agent reads after
signalling.

Limits:
* Only calls through the wrapped Python functions are seen: DDP's gradient all-reduces (C++
  hooks in `backward()`), FSDP's and compiled code's functional collectives, NCCL kernels a
  stream waits on, and `from torch.distributed import all_reduce` done before `install()` (by a
  module the forkserver preloaded) are not. There, `progress.step()` is the way: the stall is
  then "no progress for longer than the timeout".
* `async_op=True` returns at once; the wait is seen when it is `Work.wait()` (wrapped when the
  pybind class allows it, see `install`), not when a tensor is used on another stream.
* One thread's calls are stamped at a time (a depth counter per process): a collective another
  thread runs while one is in progress is not stamped.
* `--worker-start exec` workers, `--no-python` commands and function entrypoints (the API's
  `elastic_launch(config, fn)`) do not run `install()`: no collective stamps. `progress.step()`
  works there (it opens the slot and registers the stack dump on its first call); `--run-path`
  scripts are wrapped as preloaded ones are.
* A script that installs its own SIGUSR1 handler replaces the stack dump (the report then says
  there is no stack); the agent signals only a process whose slot says the dump is registered.
* The two fields of a stamp are written with aligned 8-byte stores, each atomic on x86-64 and
  arm64; a reader may see a step a call ahead of its time, which moves nothing by more than a
  step.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import mmap
import os
import signal
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

#: the environment variable naming the agent's progress directory
DIR_VARIABLE = "ELASTICJOB_PROGRESS_DIR"
MAGIC = b"EJP1"
SLOT_SIZE = 64
#: (field, struct code, offset): the slot's layout
LAYOUT = (
    ("magic", "4s", 0),
    ("flags", "I", 4),
    ("pid", "q", 8),
    ("step", "q", 16),
    ("alive", "d", 24),  # time of the last step or checkpoint
    ("entered", "d", 32),  # time the current collective started, 0 outside
    ("left", "d", 40),  # time the last collective ended
    ("op", "I", 48),
    ("checkpoints", "I", 52),
    ("checkpoint_seconds", "d", 56),
)
FORMAT = "<" + "".join(code for _, code, _ in LAYOUT)
if struct.calcsize(FORMAT) != SLOT_SIZE:  # a layout typo fails at import, never at run time
    raise ImportError(f"progress slot layout is {struct.calcsize(FORMAT)} bytes, not {SLOT_SIZE}")
FLAG_STACK_DUMP = 1
STACK_SIGNAL = signal.SIGUSR1

#: torch.distributed's blocking calls, wrapped by `install`; index 0 is "none", the last Work.wait
OPS = (
    "",
    "all_reduce",
    "broadcast",
    "all_gather",
    "all_gather_into_tensor",
    "_all_gather_base",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "_reduce_scatter_base",
    "reduce",
    "gather",
    "scatter",
    "all_to_all",
    "all_to_all_single",
    "barrier",
    "monitored_barrier",
    "send",
    "recv",
    "all_gather_object",
    "broadcast_object_list",
    "gather_object",
    "scatter_object_list",
    "all_reduce_coalesced",
    "Work.wait",
)

_STAMP = struct.Struct("<qd")  # step, alive
_ENTER = struct.Struct("<d")
_LEAVE = struct.Struct("<dd")  # entered = 0, left
_OP = struct.Struct("<I")
_CHECKPOINT = struct.Struct("<Id")
_HEADER = struct.Struct("<4sIq")


@dataclass(frozen=True)
class SlotState:
    """One slot as the agent reads it."""

    flags: int
    pid: int
    step: int
    alive: float
    entered: float
    left: float
    op: int
    checkpoints: int
    checkpoint_seconds: float

    @property
    def op_name(self) -> str:
        return OPS[self.op] if 0 <= self.op < len(OPS) else f"op {self.op}"


def decode(data: bytes | bytearray | memoryview | mmap.mmap) -> SlotState | None:
    """A slot's fields, or None while no worker has opened it."""
    values = struct.unpack_from(FORMAT, data, 0)
    if values[0] != MAGIC:
        return None
    return SlotState(*values[1:])


def slot_path(directory: str, local_rank: int) -> str:
    return os.path.join(directory, f"local{local_rank}")


def stack_path(directory: str, local_rank: int) -> str:
    return os.path.join(directory, f"local{local_rank}.stack")


class Slot:
    """The worker's side of one slot: a writable mapping and the step count."""

    __slots__ = ("buf", "count", "depth")

    def __init__(self, buf: mmap.mmap | bytearray, flags: int = 0) -> None:
        self.buf = buf
        self.count = 0
        self.depth = 0
        _HEADER.pack_into(buf, 0, MAGIC, flags, os.getpid())

    def set_flags(self, flags: int) -> None:
        _HEADER.pack_into(self.buf, 0, MAGIC, flags, os.getpid())

    def step(self, n: int | None = None) -> None:
        self.count = self.count + 1 if n is None else n
        _STAMP.pack_into(self.buf, 16, self.count, time.monotonic())

    def checkpoint(self, seconds: float) -> None:
        state = decode(self.buf)
        count, total = (state.checkpoints, state.checkpoint_seconds) if state else (0, 0.0)
        _CHECKPOINT.pack_into(self.buf, 52, count + 1, total + seconds)
        _STAMP.pack_into(self.buf, 16, self.count, time.monotonic())

    def enter(self, op: int) -> None:
        _OP.pack_into(self.buf, 48, op)
        _ENTER.pack_into(self.buf, 32, time.monotonic())

    def leave(self) -> None:
        _LEAVE.pack_into(self.buf, 32, 0.0, time.monotonic())


class _Process:
    """This process's slot, once looked for (a module-level singleton: one slot per worker)."""

    slot: Slot | None = None
    looked = False
    stack_file: IO[bytes] | None = None


_this = _Process()


def open_slot(env: Mapping[str, str] = os.environ) -> Slot | None:
    """This worker's slot (mapped once per process), or None outside the launcher's stall watch."""
    if _this.looked:
        return _this.slot
    _this.looked = True
    directory, local_rank = env.get(DIR_VARIABLE, ""), env.get("LOCAL_RANK", "")
    if not directory or not local_rank.isdigit():
        return None
    try:
        with open(slot_path(directory, int(local_rank)), "r+b") as f:
            buf = mmap.mmap(f.fileno(), SLOT_SIZE)
    except (OSError, ValueError):
        return None
    _this.slot = Slot(buf, _register_stack_dump(stack_path(directory, int(local_rank))))
    return _this.slot


def _register_stack_dump(path: str) -> int:
    """faulthandler writes every thread's stack to `path` on SIGUSR1; the slot's flags say so."""
    try:
        _this.stack_file = open(path, "wb")  # noqa: SIM115 (kept open: faulthandler writes to its fd)
        faulthandler.register(STACK_SIGNAL, file=_this.stack_file, all_threads=True, chain=False)
    except (OSError, RuntimeError, ValueError):
        return 0
    return FLAG_STACK_DUMP


def step(n: int | None = None) -> None:
    """One training step done (`n`: its number; default the previous one plus one)."""
    slot = _this.slot
    if slot is None:
        if _this.looked:
            return
        slot = open_slot()
        if slot is None:
            return
    slot.count = slot.count + 1 if n is None else n
    _STAMP.pack_into(slot.buf, 16, slot.count, time.monotonic())


def checkpoint(seconds: float) -> None:
    """A checkpoint (save) took `seconds`: counted for goodput accounting, and a sign of life."""
    slot = open_slot()
    if slot is not None:
        slot.checkpoint(seconds)


def _stamped(fn: Callable[..., Any], op: int, slot: Slot) -> Callable[..., Any]:
    @functools.wraps(fn)
    def stamped(*args: Any, **kwargs: Any) -> Any:
        if slot.depth:
            return fn(*args, **kwargs)
        slot.depth = 1
        slot.enter(op)
        try:
            return fn(*args, **kwargs)
        finally:
            slot.leave()
            slot.depth = 0

    stamped.__elasticjob_stamped__ = True  # type: ignore[attr-defined]
    return stamped


def install(env: Mapping[str, str] = os.environ) -> bool:
    """Open the slot and wrap torch.distributed's blocking calls; False when there is no slot.

    `Work.wait` is wrapped on torch's pybind `Work` class when it accepts a new attribute (it
    does in torch 2.x); otherwise async work is seen only through the progress API.
    """
    slot = open_slot(env)
    if slot is None:
        return False
    import torch.distributed as dist
    from torch.distributed import distributed_c10d

    for op, name in enumerate(OPS):
        fn = getattr(distributed_c10d, name, None) if name and "." not in name else None
        if fn is None or getattr(fn, "__elasticjob_stamped__", False):
            continue
        wrapped = _stamped(fn, op, slot)
        setattr(distributed_c10d, name, wrapped)
        if getattr(dist, name, None) is fn:
            setattr(dist, name, wrapped)
    work = getattr(dist, "Work", None)
    wait = getattr(work, "wait", None)
    if work is not None and wait is not None and not getattr(wait, "__elasticjob_stamped__", False):
        with contextlib.suppress(AttributeError, TypeError):
            work.wait = _stamped(wait, OPS.index("Work.wait"), slot)
    return True

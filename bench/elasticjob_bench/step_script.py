"""The benchmarks' training script: data-parallel steps that record when each one finished.

Each rank appends `<step> <wall-clock time>` to `<MARK_DIR>/rank-<RANK>` after every step
(every process of a benchmark runs on this one machine, so the clocks agree). Each process also
appends `start <time>` (as the script starts: before its torch import, which a preloaded worker
has already done), `init <time>` (process group formed) and `pid <pid>` (the process B2a kills)
to `<MARK_DIR>/proc-<RANK>`, for the recovery breakdown. STEPS (default 1) and STEP_SLEEP
(default 0) set the length; B1 uses one step, B2/B5 a long run with a fault.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

STARTED = time.time()

# the start time is taken before the imports it measures
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402


def main() -> int:
    dist.init_process_group("gloo")
    with (Path(os.environ["MARK_DIR"]) / f"proc-{dist.get_rank()}").open("a") as f:
        f.write(f"start {STARTED!r}\ninit {time.time()!r}\npid {os.getpid()}\n")
    steps, pause = int(os.environ.get("STEPS", "1")), float(os.environ.get("STEP_SLEEP", "0"))
    model = nn.Linear(64, 10)
    mark = Path(os.environ["MARK_DIR"]) / f"rank-{dist.get_rank()}"
    for step in range(1, steps + 1):
        x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
        with mark.open("a") as f:
            f.write(f"{step} {time.time()!r}\n")
        time.sleep(pause)
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""B1's training script: join the process group, run one data-parallel step, record the time.

Each rank writes `<MARK_DIR>/rank-<RANK>` holding the wall-clock time at which its first step
finished (every process of a benchmark runs on this one machine, so the clocks agree).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


def main() -> int:
    dist.init_process_group("gloo")
    model = nn.Linear(64, 10)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()  # type: ignore[no-untyped-call]
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
    mark = Path(os.environ["MARK_DIR"]) / f"rank-{dist.get_rank()}"
    mark.write_text(repr(time.time()))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

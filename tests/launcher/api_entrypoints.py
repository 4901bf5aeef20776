"""Function entrypoints for the API tests (module-level, so spawned workers can import them).

Each writes OUT/fn<rank>-<attempt>.json and returns a value built from its rank.
"""

from __future__ import annotations

import json
import os
import time

import torch
import torch.distributed as dist


def all_reduce(out: str, scale: int) -> dict[str, int]:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.tensor([float(rank)])
    dist.all_reduce(total)
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    with open(os.path.join(out, f"fn{rank}-{attempt}.json"), "w") as f:
        json.dump({"rank": rank, "world": world, "sum": total.item()}, f)
    dist.destroy_process_group()
    return {"rank": rank, "value": rank * scale, "world": world}


def fail_rank(out: str, bad_rank: int, first_attempt_only: bool) -> int:
    """The bad rank raises once every rank of its attempt has written its file: a failing rank has
    its peers terminated, and one still starting would otherwise never write it."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    with open(os.path.join(out, f"fn{rank}-{attempt}.json"), "w") as f:
        json.dump({"rank": rank, "attempt": attempt}, f)
    if rank == bad_rank and (attempt == 0 or not first_attempt_only):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            os.path.exists(os.path.join(out, f"fn{r}-{attempt}.json")) for r in range(world)
        ):
            time.sleep(0.05)
        raise ValueError(f"rank {rank} broke on attempt {attempt}")
    return attempt

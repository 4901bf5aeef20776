"""Test training script for stall detection: all-reduce steps with a checkpoint, and a hang on the first attempt.

Env: OUT (directory), STEPS (default 6), HANG_STEP (default 3), STEP_SLEEP (seconds before each step,
default 0.1; STEP_SLEEP_RANK<r> for one rank), USE_PROGRESS=1 (report each step through
elasticjob_launcher.progress), HANG (first attempt only): "collective" (rank 0 blocks in an
all_reduce the other ranks never join, they sleep outside any collective), "outside" (rank HANG_RANK
sleeps outside any collective, the others go on into the step's all_reduce) or "none" (default).
Each completed step is checkpointed to OUT/ckpt-rank<r>; a restart resumes from it. Each rank writes
OUT/rank<r>.json at the end.
"""

import datetime
import json
import os
import time

import torch
import torch.distributed as dist
from elasticjob_launcher import progress

restart = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
out = os.environ["OUT"]
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))  # longer than any stall timeout
rank, world = dist.get_rank(), dist.get_world_size()
use_progress = os.environ.get("USE_PROGRESS") == "1"
hang = os.environ.get("HANG", "none") if restart == 0 else "none"
hang_step, hang_rank = int(os.environ.get("HANG_STEP", "3")), int(os.environ.get("HANG_RANK", "0"))
steps = int(os.environ.get("STEPS", "6"))
sleep = float(os.environ.get(f"STEP_SLEEP_RANK{rank}", os.environ.get("STEP_SLEEP", "0.1")))
ckpt = os.path.join(out, f"ckpt-rank{rank}")
start = 0
if os.path.exists(ckpt):
    with open(ckpt) as f:
        start = int(f.read())
total = 0.0
for step in range(start, steps):
    time.sleep(sleep)
    if hang == "collective" and step == hang_step and rank == 0:
        dist.all_reduce(torch.ones(1))  # HANG-COLLECTIVE: the other ranks never join this one
    elif step == hang_step and (hang == "collective" or (hang == "outside" and rank == hang_rank)):
        time.sleep(3600)  # HANG-OUTSIDE
    t = torch.ones(1)
    dist.all_reduce(t)
    total += t.item()
    with open(ckpt, "w") as f:
        f.write(str(step + 1))
    if use_progress:
        progress.step(step + 1)
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"rank": rank, "world": world, "restart": restart, "start": start, "total": total}, f)
dist.barrier()
dist.destroy_process_group()

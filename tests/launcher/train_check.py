"""Test training script: all-reduce across ranks; each rank writes a JSON file the tests check.

Env: OUT (directory), FAIL_ONCE_RANK (this global rank exits 7 on its first attempt, before it joins
the process group, so the other ranks wait in init and only the agent's termination stops them: the
failed rank is always this one, never a peer whose collective was reset), STEPS and
STEP_SLEEP (a long-running loop of all-reduces, so tests can act mid-run), PIDS (directory where
each rank writes its pid per attempt).
"""

import json
import os
import sys
import time

import torch
import torch.distributed as dist

restart = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
if os.environ.get("FAIL_ONCE_RANK") == os.environ["RANK"] and restart == 0:
    sys.exit(7)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
out = os.environ["OUT"]
if os.environ.get("PIDS"):
    with open(os.path.join(os.environ["PIDS"], f"rank{rank}-pid"), "w") as f:
        f.write(f"{os.getpid()} {restart} {world}\n")
steps, sleep = int(os.environ.get("STEPS", "1")), float(os.environ.get("STEP_SLEEP", "0"))
total = torch.zeros(1)
for _ in range(steps):
    t = torch.tensor([float(rank)])
    dist.all_reduce(t)
    total = t
    time.sleep(sleep)
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"rank": rank, "world": world, "sum": total.item(), "restart": restart}, f)
dist.barrier()
dist.destroy_process_group()

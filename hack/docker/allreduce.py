"""Smoke job for the training image: 2 ranks all-reduce with gloo and check the sum."""

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
expected = sum(range(1, dist.get_world_size() + 1))
if t.item() != expected:
    raise SystemExit(f"rank {dist.get_rank()}: sum {t.item()} != {expected}")
print(f"rank {dist.get_rank()}/{dist.get_world_size()}: all-reduce ok ({t.item():.0f})", flush=True)
dist.destroy_process_group()

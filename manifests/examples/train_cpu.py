"""Elastic data-parallel training with synthetic data (gloo on CPU, or nccl): the example jobs' script.

No downloads: a fixed-seed synthetic classification task (10 classes, 64 features). Every rank
keeps a checkpoint in CHECKPOINT_DIR (its own disk is enough): on (re)start the ranks agree on the
newest step any of them has, that rank broadcasts its state, and training resumes there, so a
replaced pod or a restarted worker group loses nothing beyond the last checkpoint. At the end it
checks its own result (accuracy on held-out data) and exits non-zero if it is not met; rank 0
writes the result as JSON to RESULT_PATH (default: the container's termination-message file).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

FEATURES, CLASSES = 64, 10


def dataset(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1234)
    centers = torch.randn(CLASSES, FEATURES, generator=gen) * 3
    gen.manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=gen)
    return centers[labels] + torch.randn(n, FEATURES, generator=gen), labels


def save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, tmp)
    os.replace(tmp, path)


def resume(path: Path, model: nn.Module, opt: torch.optim.Optimizer) -> int:
    """Agree on the newest checkpoint across ranks and load it everywhere; returns its step."""
    device = next(model.parameters()).device
    local = torch.load(path, weights_only=True, map_location=device) if path.exists() else None
    mine = torch.tensor([local["step"] if local else -1, -dist.get_rank()], dtype=torch.long, device=device)
    steps = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(steps, mine)
    best_step, neg_rank = max(tuple(t.tolist()) for t in steps)
    if best_step < 0:
        return 0
    if local is not None and local["step"] == best_step:
        model.load_state_dict(local["model"])
        opt.load_state_dict(local["opt"])
    for p in model.parameters():
        dist.broadcast(p.data, src=-neg_rank)
    return int(best_step)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--step-sleep", type=float, default=float(os.environ.get("STEP_SLEEP", "0.02")))
    parser.add_argument("--min-accuracy", type=float, default=0.9)
    args = parser.parse_args()

    backend = os.environ.get("TORCH_DISTRIBUTED_BACKEND", "gloo")
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, CLASSES)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ckpt_dir = Path(os.environ.get("CHECKPOINT_DIR", "checkpoints"))
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt = ckpt_dir / f"rank-{os.environ.get('LOCAL_RANK', '0')}.pt"
    step = resume(ckpt, model, opt)
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    print(f"rank {rank}/{world} starts at step {step} (restart {restart})", flush=True)

    loss_fn = nn.CrossEntropyLoss()
    while step < args.steps:
        x, y = (t.to(device) for t in dataset(seed=step * 1000 + rank, n=args.batch))
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world
        opt.step()
        step += 1
        if step % args.checkpoint_every == 0 or step == args.steps:
            save(ckpt, model, opt, step)
        if rank == 0 and step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} world {world}", flush=True)
        time.sleep(args.step_sleep)

    x, y = (t.to(device) for t in dataset(seed=999_999, n=2000))
    accuracy = (model(x).argmax(dim=1) == y).float().mean().item()
    dist.barrier()
    ok = accuracy >= args.min_accuracy
    if rank == 0:
        result = {"accuracy": round(accuracy, 4), "worldSize": world, "steps": step, "ok": ok}
        print("FINAL " + json.dumps(result), flush=True)
        out = Path(os.environ.get("RESULT_PATH", "/dev/termination-log"))
        try:
            out.write_text(json.dumps(result))
        except OSError as exc:
            print(f"could not write the result to {out}: {exc}", flush=True)
    dist.destroy_process_group()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

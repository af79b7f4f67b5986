"""The processes of a run under torchrun: which one this is, joining their group, and the few
reductions the loops need (each a no-op in a single process)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size): torchrun's, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Rank 0, the one process that writes files and prints."""
    return world()[0] == 0


def init_distributed(device: torch.device) -> None:
    """Join torchrun's process group (gloo on the CPU, NCCL on CUDA) when launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def all_max(value: float, device: torch.device) -> float:
    """The largest of every process's value (the value itself in a single process)."""
    if world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Element-wise sums of every process's tensor, in place."""
    if world()[1] > 1:
        dist.all_reduce(t)
    return t


def gather(obj) -> list:
    """Every process's obj, in rank order."""
    if world()[1] == 1:
        return [obj]
    out = [None] * world()[1]
    dist.all_gather_object(out, obj)
    return out

"""What a network costs: parameters, multiply-adds of one view (counted on meta tensors), and the
summary `sfcli info` prints."""

from __future__ import annotations

import torch
from torch import nn

from sfcli.model import SlowFast
from sfcli.model_config import ModelConfig


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gflops(cfg: ModelConfig, crop: int = 256) -> float:
    """Multiply-adds x 1e-9 of one view (alpha*T frames at crop x crop), counted by torch's own
    FlopCounterMode on meta tensors, so that no real compute runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = SlowFast(cfg).eval()
        clip = torch.empty(1, 3, cfg.fast_frames, crop, crop)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(clip)
    return counter.get_total_flops() / 2 / 1e9  # the counter counts a multiply-add as 2 FLOPs


def describe(cfg: ModelConfig, arch: str = "", crop: int = 256) -> dict:
    """Size and cost of a network, as `sfcli info` prints them."""
    with torch.device("meta"):
        params = count_params(SlowFast(cfg))
    return {
        "arch": arch,
        "params": params,
        "gflops": round(count_gflops(cfg, crop), 2),
        "slow_frames": cfg.frames if cfg.pathway != "fast" else 0,
        "fast_frames": cfg.fast_frames if cfg.pathway != "slow" else 0,
        "slow_stride": cfg.tau if cfg.pathway != "fast" else None,
        "fast_stride": cfg.fast_stride if cfg.pathway != "slow" else None,
        "crop": crop,
        "config": cfg.to_dict(),
    }

"""The paper's sampling and transforms: frame indices of a clip on the 30 fps time base, uniform
positions of test clips and crops, short-side resize, crops across the long side, normalisation."""

from __future__ import annotations

import numpy as np
import torch

REFERENCE_FPS = 30  # clips are sampled on a 30 fps time base whatever the file's own rate
KINETICS_MEAN, KINETICS_STD = 0.45, 0.225  # of RGB on [0, 1], one value for every channel


def clip_indices(num_frames: int, fps: float, frames: int, stride: int, start_fraction: float) -> list[int]:
    """Frame indices of one clip: `frames` frames `stride` apart on the 30 fps time base, the
    window starting at `start_fraction` of the free room. Indices past the end are clamped, so a
    short video repeats frames instead of failing."""
    span = frames * stride * fps / REFERENCE_FPS  # in the file's own frames
    room = max(num_frames - span, 0.0)
    start = room * start_fraction
    return [min(int(i), num_frames - 1) for i in np.linspace(start, start + span - 1, frames)]


def uniform_positions(num_clips: int) -> list[float]:
    """N positions in [0, 1] spaced uniformly, first and last at the ends (clip starts, crops)."""
    return [0.5] if num_clips == 1 else [i / (num_clips - 1) for i in range(num_clips)]


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) uint8 frames resized so the shorter side is `size`: antialiased bilinear, the
    kernel torchvision's v2 resize runs on uint8 (identical output), called directly because
    importing torchvision took 1.5 s of every command's start (measured)."""
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    out_size = (max(size, round(h * scale)), max(size, round(w * scale)))
    return torch.nn.functional.interpolate(frames, size=out_size, mode="bilinear", antialias=True, align_corners=False)


def three_crops(frames: torch.Tensor, crop: int, num_crops: int = 3) -> list[torch.Tensor]:
    """Crops spread across the long side: left, centre, right (or top, centre, bottom)."""
    h, w = frames.shape[-2:]
    starts = uniform_positions(num_crops)
    if w >= h:
        y = (h - crop) // 2
        return [frames[..., y : y + crop, round((w - crop) * s) : round((w - crop) * s) + crop] for s in starts]
    x = (w - crop) // 2
    return [frames[..., round((h - crop) * s) : round((h - crop) * s) + crop, x : x + crop] for s in starts]


def normalize(clips: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 clips (..., C, T, H, W) to the network's float input: (clips / 255 - mean) / std."""
    return (clips / 255).sub_(mean).div_(std)  # one new tensor, not three

"""The paper's sampling and transforms: frame indices of training clips and of the reference's
test clips on the 30 fps time base, short-side resizes, crops across the long side, normalisation.

Test views follow PySlowFast's Kinetics test exactly (its PyAV decoder on files with a duration,
as every Kinetics mp4 has): where clips start, which frames they take, how views are resized and
where crops sit. Training clips keep sfcli's own sampling and antialiased resize."""

from __future__ import annotations

import math

import numpy as np
import torch

REFERENCE_FPS = 30  # clips are sampled on a 30 fps time base whatever the file's own rate
KINETICS_MEAN, KINETICS_STD = 0.45, 0.225  # of RGB on [0, 1], one value for every channel


def clip_indices(num_frames: int, fps: float, frames: int, stride: int, start_fraction: float) -> list[int]:
    """Frame indices of one training clip: `frames` frames `stride` apart on the 30 fps time base,
    the window starting at `start_fraction` of the free room. Indices past the end are clamped, so
    a short video repeats frames instead of failing."""
    span = frames * stride * fps / REFERENCE_FPS  # in the file's own frames
    room = max(num_frames - span, 0.0)
    start = room * start_fraction
    return [min(int(i), num_frames - 1) for i in np.linspace(start, start + span - 1, frames)]


def view_clip_indices(num_frames: int, fps: float, frames: int, stride: int, index: int, count: int) -> list[int]:
    """Frame indices of test clip `index` of `count`, as the reference takes them. A window of
    ceil(stride * (frames - 1) * fps / 30) frames starts at room * index / count (room: the frames
    it leaves free; clip 0 at the very start, also when count is 1); the frames from the first
    whole frame in it to one past its end are decoded, and `frames` of those are picked at
    float32 linspace(0, stride * frames * fps / 30 - 1) positions, floored and clamped to them.
    At 30 fps and stride 2 that is plain stride 2, except that clip 0 (and a clip whose start is
    a whole frame) ends one frame later: 0, 2, ..., 60, 63."""
    window = max(1.0, math.ceil(stride * (frames - 1) / REFERENCE_FPS * fps))
    start = max(num_frames - window, 0) * index / count
    first = min(math.ceil(start), num_frames - 1)
    last = min(math.floor(start + window - 1) + 1, num_frames - 1)  # the decoder keeps one frame past the end
    span = max(1.0, stride * frames / REFERENCE_FPS * fps)
    picks = torch.linspace(0, span - 1, frames).clamp(0, last - first).long()
    return [first + int(i) for i in picks]


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Training: (N, C, H, W) uint8 frames resized so the shorter side is `size`: antialiased
    bilinear, the kernel torchvision's v2 resize runs on uint8 (identical output), called directly
    because importing torchvision took 1.5 s of every command's start (measured)."""
    h, w = frames.shape[-2:]
    scale = size / min(h, w)
    out_size = (max(size, round(h * scale)), max(size, round(w * scale)))
    return torch.nn.functional.interpolate(frames, size=out_size, mode="bilinear", antialias=True, align_corners=False)


def scale_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Test views: (N, C, H, W) uint8 frames with the shorter side made `size` as the reference
    does it: untouched if it already is; else bilinear without antialiasing, the long side floored
    (320x240 -> 341x256). The reference resizes the normalised float frames; resizing is linear
    with weights that sum to 1, so this equals it up to the rounding back to uint8 (half a level)."""
    h, w = frames.shape[-2:]
    if min(h, w) == size:
        return frames
    out_size = (size, math.floor(w / h * size)) if h <= w else (math.floor(h / w * size), size)
    resized = torch.nn.functional.interpolate(frames.float(), size=out_size, mode="bilinear", align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def crop_offsets(length: int, crop: int, count: int) -> list[int]:
    """Where `count` crops start along a side of `length`: spread from one end to the other, the
    centre (and any offset between) rounded up, as the reference places them (457 -> 0, 101, 201)."""
    margin = length - crop
    if count == 1:
        return [-(-margin // 2)]
    return [-(-margin * i // (count - 1)) for i in range(count)]


def three_crops(frames: torch.Tensor, crop: int, num_crops: int = 3) -> list[torch.Tensor]:
    """Test crops spread across the long side: left, centre, right (or top, centre, bottom), each
    centred on the short side (offsets by `crop_offsets`)."""
    h, w = frames.shape[-2:]
    if w >= h:
        y = crop_offsets(h, crop, 1)[0]
        return [frames[..., y : y + crop, x : x + crop] for x in crop_offsets(w, crop, num_crops)]
    x = crop_offsets(w, crop, 1)[0]
    return [frames[..., y : y + crop, x : x + crop] for y in crop_offsets(h, crop, num_crops)]


def normalize(clips: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 clips (..., C, T, H, W) to the network's float input: (clips / 255 - mean) / std."""
    return (clips / 255).sub_(mean).div_(std)  # one new tensor, not three

"""The clip loader: how clips are cut (ClipConfig), the clips and test views of one video, and the
dataset a DataLoader reads. A video that cannot be decoded never ends a run: in training it is
quarantined and replaced, in testing it is excluded and counted."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch

from sfcli.errors import VideoError
from sfcli.framecache import FrameCache, read_frames
from sfcli.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    REFERENCE_FPS,
    clip_indices,
    resize_short_side,
    scale_short_side,
    three_crops,
    view_clip_indices,
)
from sfcli.videolist import VideoList


@dataclass(frozen=True)
class ClipConfig:
    """How clips are cut and transformed (a preset's pipeline: sfcli.presets). `frames` at
    `stride` is the Fast-rate clip (alpha*T frames, tau/alpha apart on the 30 fps time base)."""

    frames: int = 32
    stride: int = 2
    max_stride: int | None = None  # training stride drawn from [stride, max_stride]: multigrid's coarse clips
    crop: int = 224
    min_short: int = 256  # training short side, drawn from [min_short, max_short]
    max_short: int = 320
    test_short: int = 256
    test_crop: int = 256
    num_clips: int = 10  # test views: clips uniform in time x crops across the long side
    num_crops: int = 3
    mean: float = KINETICS_MEAN  # the network's input is (pixel / 255 - mean) / std
    std: float = KINETICS_STD

    @property
    def views(self) -> int:
        return self.num_clips * self.num_crops

    def short_video(self, num_frames: int, fps: float) -> str | None:
        """Why every clip of a video repeats its last frame (it is shorter than a clip's span), or None."""
        span = math.floor(self.frames * self.stride * fps / REFERENCE_FPS + 1e-6)  # frames of the file
        if num_frames < span:
            return f"{num_frames} frames, shorter than the {span}-frame clip span: its last frame is repeated"
        return None


def read_clips(path, clip: ClipConfig, starts: list[float], short_side: int, decoder: str | FrameCache = "auto",
               seconds: tuple[float, float] | None = None) -> tuple[torch.Tensor, int, float]:
    """uint8 (clips, C, T, H, W) of one video at the given start fractions, short side resized,
    from one decode; `seconds` = (start, end) keeps the clips inside that part of the video.
    Also returns the video's frame count and frame rate."""
    def pick(num_frames, fps):
        return [i for s in starts for i in clip_indices(num_frames, fps, clip.frames, clip.stride, s)]

    resize = partial(resize_short_side, size=short_side)
    frames, num_frames, fps = _decode_clips(path, pick, decoder, seconds, resize)
    frames = frames.permute(0, 3, 1, 2)  # (N*T, C, H, W)
    clips = frames.reshape(len(starts), clip.frames, *frames.shape[1:]).transpose(1, 2)
    return clips, num_frames, fps


def _decode_clips(path, pick, decoder: str | FrameCache, seconds, resize,
                  notes: list[str] | None = None) -> tuple[torch.Tensor, int, float]:
    """(frames (N, H, W, C) that pick(num_frames, fps) chooses, resized as they arrive, frame count,
    frame rate); with `seconds`, pick sees only that part of the video and its indices count from
    its start. `notes`: as for sfcli.decode.decode."""
    found = {}

    def pick_in_window(num_frames, fps):
        found.update(num_frames=num_frames, fps=fps)
        first, end = 0, num_frames
        if seconds is not None:
            first = min(int(seconds[0] * fps), num_frames - 1)
            end = max(first + 1, min(num_frames, math.ceil(seconds[1] * fps)))
        return [first + i for i in pick(end - first, fps)]

    return read_frames(path, pick_in_window, decoder, resize, notes), found["num_frames"], found["fps"]


def test_views(path, clip: ClipConfig, decoder: str | FrameCache = "auto", seconds=None,
               notes: list[str] | None = None) -> tuple[torch.Tensor, int, float]:
    """The reference's test views of one video (or of `seconds` of it): clip.num_clips clips x
    clip.num_crops crops, uint8 (views, C, T, test_crop, test_crop), clip-major, decoded once;
    with the video's frame count and frame rate. Clip frames, resize and crops are PySlowFast's
    (sfcli.transforms: view_clip_indices, scale_short_side, three_crops). `notes` gets what the
    decoder did otherwise than asked (sfcli.decode.decode)."""
    n = clip.num_clips

    def pick(num_frames, fps):
        return [i for k in range(n) for i in view_clip_indices(num_frames, fps, clip.frames, clip.stride, k, n)]

    resize = partial(scale_short_side, size=clip.test_short)
    frames, num_frames, fps = _decode_clips(path, pick, decoder, seconds, resize, notes)
    frames = frames.permute(0, 3, 1, 2)  # (N*T, C, H, W)
    clips = frames.reshape(n, clip.frames, *frames.shape[1:]).transpose(1, 2)
    views = three_crops(clips, clip.test_crop, clip.num_crops)  # M x (N, C, T, crop, crop)
    # NDHWC (channels_last_3d) in memory, the frames' own layout and the network's: one copy.
    views = torch.stack([v.permute(0, 2, 3, 4, 1) for v in views], dim=1).flatten(0, 1).permute(0, 4, 1, 2, 3)
    return views, num_frames, fps


class VideoDataset(torch.utils.data.Dataset):
    """Clips of a VideoList. Items are dicts:
    train: {"clip": uint8 (C, T, crop, crop), "label", "index", "failures": [(index, reason)]}
    test:  {"clip": uint8 (views, C, T, test_crop, test_crop) or None, "label", "index", "error",
            "notes": [ClipConfig.short_video's, the decoder's]: why frames are repeated}

    Training randomness comes from (seed, epoch, index) only, so that a resumed run and any
    number of loader workers see the same clips. Videos that fail are flagged in a tensor in
    shared memory, so no worker decodes them again in this run; a failed sample is replaced by a
    video already known to decode, so that a bad file is only ever opened by the one worker the
    sampler hands it to.
    """

    def __init__(self, videos: VideoList, clip: ClipConfig, train: bool, decoder: str | FrameCache = "auto",
                 seed: int = 0):
        self.videos, self.clip, self.train, self.decoder, self.seed = videos, clip, train, decoder, seed
        self.epoch = 0
        self.bad = torch.zeros(len(videos.paths), dtype=torch.bool).share_memory_()
        self.good = torch.zeros(len(videos.paths), dtype=torch.bool).share_memory_()

    def __len__(self):
        return len(self.videos.paths)

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __getitem__(self, key: int | tuple[int, ClipConfig]) -> dict:
        """key: a video's index, or (index, the clip settings of this step) in multigrid training."""
        if not self.train:
            return self._test_item(key)
        return self._train_item(*key) if isinstance(key, tuple) else self._train_item(key, self.clip)

    def _train_item(self, index: int, settings: ClipConfig) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        failures = []
        for _ in range(10):
            if not self.bad[index]:
                try:
                    short = int(rng.integers(settings.min_short, settings.max_short + 1))
                    start = float(rng.random())
                    cut = settings
                    if settings.max_stride:
                        cut = replace(settings, stride=int(rng.integers(settings.stride, settings.max_stride + 1)))
                    clip = read_clips(self.videos.paths[index], cut, [start], short, self.decoder)[0][0]
                    self.good[index] = True
                    break
                except VideoError as e:
                    self.bad[index] = True
                    failures.append((index, str(e)))
            pool = self.good.nonzero().flatten()
            if len(pool) == 0:  # nothing decoded yet in this run: any video not known to be bad
                pool = (~self.bad).nonzero().flatten()
            if len(pool) == 0:
                raise VideoError("every video in the dataset failed to decode")
            index = int(pool[rng.integers(len(pool))])
        else:
            raise VideoError("10 videos in a row failed to decode")
        h, w = clip.shape[-2:]
        y, x = int(rng.integers(h - settings.crop + 1)), int(rng.integers(w - settings.crop + 1))
        clip = clip[..., y : y + settings.crop, x : x + settings.crop]
        if rng.random() < 0.5:
            clip = clip.flip(-1)
        return {"clip": clip.contiguous(), "label": self.videos.labels[index], "index": index, "failures": failures}

    def _test_item(self, index: int) -> dict:
        item = {"clip": None, "label": self.videos.labels[index], "index": index, "error": None, "notes": []}
        decoder_notes = []
        try:
            item["clip"], num_frames, fps = test_views(self.videos.paths[index], self.clip, self.decoder,
                                                       notes=decoder_notes)
            item["notes"] = [n for n in (self.clip.short_video(num_frames, fps), *decoder_notes) if n]
        except VideoError as e:
            item["error"] = str(e)
        return item


def collate(items: list[dict]) -> dict:
    """Batch items; test items that failed to decode travel as errors, not clips, and their
    notes as (index, note)."""
    good = [it for it in items if it["clip"] is not None]
    batch = {
        "clip": torch.stack([it["clip"] for it in good]) if good else None,
        "label": torch.tensor([it["label"] for it in good], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "failures": [f for it in items for f in it.get("failures", [])],
        "notes": [(it["index"], note) for it in good for note in it.get("notes", ())],
    }
    batch["failures"] += [(it["index"], it["error"]) for it in items if it.get("error")]
    return batch

"""The clip loader: datasets users already have, decoding, the paper's sampling, transforms.

Three dataset layouts are read: the official Kinetics annotation CSV, PySlowFast `path label`
lists and a folder of class folders. Videos are decoded with decord (PyAV where decord is missing
or fails on a file). A video that cannot be decoded never ends a run: in training it is
quarantined and replaced, in testing it is excluded and counted.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sfcli.errors import DataError, VideoError

REFERENCE_FPS = 30  # clips are sampled on a 30 fps time base whatever the file's own rate
MEAN, STD = 0.45, 0.225
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
KINETICS_HEADER = ("label", "youtube_id", "time_start", "time_end")

try:  # decord has no wheels for some platforms; PyAV is the fallback
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own messages; ours say it in one line
except ImportError:  # pragma: no cover - depends on the platform
    decord = None


@dataclass(frozen=True)
class ClipConfig:
    """How clips are cut and transformed. `frames` at `stride` is the Fast-rate clip (alpha*T
    frames, tau/alpha apart on the 30 fps time base)."""

    frames: int = 32
    stride: int = 2
    crop: int = 224
    min_short: int = 256  # training short side, drawn from [min_short, max_short]
    max_short: int = 320
    test_short: int = 256
    test_crop: int = 256
    num_clips: int = 10  # test views: clips uniform in time x crops across the long side
    num_crops: int = 3

    @classmethod
    def for_model(cls, model_cfg, crop: int = 224, **overrides) -> "ClipConfig":
        """The paper's recipe scaled to `crop`: short side jittered in crop * [256, 320] / 224,
        tested at crop * 256 / 224."""
        scaled = {
            "frames": model_cfg.fast_frames,
            "stride": model_cfg.fast_stride,
            "crop": crop,
            "min_short": round(crop * 256 / 224),
            "max_short": round(crop * 320 / 224),
            "test_short": round(crop * 256 / 224),
            "test_crop": round(crop * 256 / 224),
        }
        return cls(**{**scaled, **{k: v for k, v in overrides.items() if v is not None}})

    @property
    def views(self) -> int:
        return self.num_clips * self.num_crops


# ----------------------------------------------------------------------------- dataset lists


@dataclass(frozen=True)
class VideoList:
    paths: list[Path]
    labels: list[int]
    classes: list[str]
    kind: str  # "kinetics-csv", "pyslowfast-list" or "folder"
    source: Path


def read_labels_file(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"labels file {path} is empty")
    return names


def detect_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise DataError(f"--data {path} does not exist")
    with open(path, newline="", errors="replace") as f:
        first = f.readline().strip()
    if not first:
        raise DataError(f"{path} is empty")
    if tuple(c.strip() for c in first.split(",")[:4]) == KINETICS_HEADER:
        return "kinetics-csv"
    if "," not in first and len(first.rsplit(" ", 1)) == 2:
        return "pyslowfast-list"
    raise DataError(
        f"{path} is neither a Kinetics CSV (header label,youtube_id,time_start,time_end,split) nor a "
        f"PySlowFast list ('path label' per line)"
    )


def _index_videos(root: Path) -> dict[str, list[Path]]:
    """Video files under root (three levels deep), by file stem: Kinetics clips live in
    root/<label>/, root/<split>/<label>/ or flat."""
    found: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if len(Path(dirpath).relative_to(root).parts) >= 3:
            dirnames.clear()
        for name in filenames:
            if name.lower().endswith(VIDEO_EXTENSIONS):
                found.setdefault(os.path.splitext(name)[0], []).append(Path(dirpath) / name)
    return found


def _read_kinetics_csv(path: Path, root: Path):
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader)]
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 4:
                raise DataError(f"{path}, line {lineno}: expected {len(header)} columns ({','.join(header)}), got {len(row)}")
            try:
                start, end = int(float(row[2])), int(float(row[3]))
            except ValueError:
                raise DataError(f"{path}, line {lineno}: time_start and time_end must be numbers, got {row[2]!r}, {row[3]!r}") from None
            rows.append((row[0].strip(), row[1].strip(), start, end, row[4].strip() if len(row) > 4 else ""))
    index = _index_videos(root)
    entries = []
    for label, youtube_id, start, end, split in rows:
        stem = f"{youtube_id}_{start:06d}_{end:06d}"
        candidates = index.get(stem, [])
        # Prefer the clip in its own label folder where several share a name.
        best = next((p for p in candidates if p.parent.name == label), candidates[0] if candidates else None)
        entries.append((best or root / split / label / f"{stem}.mp4", label))
    return entries


def _read_pyslowfast_list(path: Path, root: Path):
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(" ", 1)  # paths may hold spaces; the label is last
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}, line {lineno}: expected 'path label' with an integer label, got {line.strip()!r}")
        entries.append((root / parts[0], int(parts[1])))
    return entries


def _read_folder(root: Path):
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders (expected {root}/<class name>/<video>)")
    entries = []
    for name in classes:
        for dirpath, _, filenames in os.walk(root / name):
            entries += [(Path(dirpath) / f, name) for f in sorted(filenames) if f.lower().endswith(VIDEO_EXTENSIONS)]
    return entries


def read_video_list(data, prefix=None, labels=None, classes=None, skip_missing: bool = False) -> VideoList:
    """Read a Kinetics CSV, a PySlowFast list or a class-folder tree.

    Relative paths resolve against the list's folder, or `prefix`. Class names come from `classes`
    (a checkpoint's), else a labels file, else the label column / folder names sorted (the order
    of Kinetics checkpoints). Missing files are reported together, or dropped with skip_missing.
    """
    data = Path(data)
    kind = detect_kind(data)
    root = Path(prefix) if prefix else (data if kind == "folder" else data.parent)
    if kind == "kinetics-csv":
        entries = _read_kinetics_csv(data, root)
    elif kind == "pyslowfast-list":
        entries = _read_pyslowfast_list(data, root)
    else:
        entries = _read_folder(data)
    if not entries:
        raise DataError(f"{data} lists no videos")

    if classes is None and labels is not None:
        classes = read_labels_file(labels)
    if kind == "pyslowfast-list":
        top = max(label for _, label in entries)
        classes = list(classes) if classes is not None else [str(i) for i in range(top + 1)]
        bad = [label for _, label in entries if not 0 <= label < len(classes)]
        if bad:
            raise DataError(f"{data} has label {bad[0]} but there are only {len(classes)} classes")
        label_ids = [label for _, label in entries]
    else:
        classes = list(classes) if classes is not None else sorted({label for _, label in entries})
        lookup = {name: i for i, name in enumerate(classes)}
        unknown = sorted({label for _, label in entries if label not in lookup})
        if unknown:
            raise DataError(
                f"{data} has {len(unknown)} label(s) not among the {len(classes)} classes, e.g. {unknown[0]!r}"
            )
        label_ids = [lookup[label] for _, label in entries]

    paths = [Path(p) for p, _ in entries]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing and not skip_missing:
        shown = ", ".join(str(paths[i]) for i in missing[:3])
        raise DataError(
            f"{len(missing)} of {len(paths)} videos listed in {data} are missing (paths resolved against "
            f"{root}; use --prefix to change that, or --skip-missing to drop them): {shown}"
            + (", ..." if len(missing) > 3 else "")
        )
    if missing:
        keep = sorted(set(range(len(paths))) - set(missing))
        paths, label_ids = [paths[i] for i in keep], [label_ids[i] for i in keep]
        if not paths:
            raise DataError(f"every video listed in {data} is missing")
    return VideoList(paths, label_ids, classes, kind, data)


# ----------------------------------------------------------------------------- decoding


@contextlib.contextmanager
def _native_stderr_silenced():
    """decord's C++ layer prints its own error for a file it cannot open before raising; the
    raised error is reported instead, in one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _decode_decord(path: Path, pick_indices):
    with _native_stderr_silenced():
        reader = decord.VideoReader(str(path), num_threads=1)
    num_frames, fps = len(reader), reader.get_avg_fps()
    if num_frames < 1:
        raise VideoError("no video frames")
    indices = pick_indices(num_frames, fps)
    wanted = sorted(set(indices))
    return reader.get_batch(wanted).asnumpy(), wanted, indices


def _pyav_frames(container, stream, wanted: list[int], fps: float, seek: bool) -> dict[int, np.ndarray]:
    """The wanted frames (sorted indices) as RGB arrays. With `seek`, decoding starts at the key
    frame before the first wanted one and a frame's index comes from its timestamp (nothing is
    returned if a frame has none); otherwise frames are counted in order from the start."""
    start = stream.start_time or 0
    if seek:
        container.seek(start + int(wanted[0] / fps / stream.time_base), stream=stream)  # backward, to a key frame
    wanted_set, got, index = set(wanted), {}, -1
    for frame in container.decode(stream):
        if not seek:
            index += 1
        elif frame.pts is None:
            return {}
        else:
            index = round(float((frame.pts - start) * stream.time_base) * fps)
        if index in wanted_set:
            got[index] = frame.to_ndarray(format="rgb24")
        if index >= wanted[-1]:
            break
    return got


def _decode_pyav(path: Path, pick_indices):
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or REFERENCE_FPS)
        num_frames = stream.frames
        if not num_frames and stream.duration:
            num_frames = int(float(stream.duration * stream.time_base) * fps)
        if not num_frames:
            num_frames = sum(1 for _ in container.decode(stream))
            container.seek(0)
        indices = pick_indices(num_frames, fps)
        wanted = sorted(set(indices))
        # Seeking spares decoding everything before a late window; where it cannot place the first
        # wanted frame (no timestamps, an inexact seek), the frames are counted from the start.
        got = _pyav_frames(container, stream, wanted, fps, seek=True) if wanted[0] > 0 else {}
        if wanted[0] not in got:
            if wanted[0] > 0:
                container.seek(0)
            got = _pyav_frames(container, stream, wanted, fps, seek=False)
    if not got:
        raise VideoError("no frame could be decoded")
    # A container that overstates its length: the last decoded frame stands in for the rest.
    last = got[max(got)]
    return np.stack([got.get(i, last) for i in wanted]), wanted, indices


# Decoders by name; each takes (path, pick_indices) and returns (frames of the distinct wanted
# indices, those indices sorted, the indices as asked).
BACKENDS = {"decord": _decode_decord, "pyav": _decode_pyav}


def decode(path, pick_indices, decoder: str = "auto") -> torch.Tensor:
    """Frames (len(indices), H, W, 3) uint8 of one video, where pick_indices(num_frames, fps)
    chooses them; each distinct frame is decoded once. "auto" is decord, then PyAV where decord
    is missing or fails on the file. Raises VideoError with the reasons."""
    if decoder == "decord" and decord is None:
        raise VideoError("decord is not installed")
    names = [n for n in ("decord", "pyav") if n != "decord" or decord is not None] if decoder == "auto" else [decoder]
    reasons = []
    for name in names:
        try:
            frames, wanted, indices = BACKENDS[name](Path(path), pick_indices)
        except Exception as e:  # decoders raise many types; each is one reason this file is bad
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            reasons.append(f"{name}: {message}")
            continue
        position = {frame: i for i, frame in enumerate(wanted)}
        return torch.from_numpy(frames[[position[i] for i in indices]])
    raise VideoError("; ".join(reasons))


# ----------------------------------------------------------------------------- sampling


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


# ----------------------------------------------------------------------------- transforms


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


def normalize(clips: torch.Tensor) -> torch.Tensor:
    """uint8 clips (..., C, T, H, W) to the network's float input: /255, mean 0.45, std 0.225."""
    return (clips / 255).sub_(MEAN).div_(STD)  # one new tensor, not three


# ----------------------------------------------------------------------------- clips of one video


def read_clips(path, clip: ClipConfig, starts: list[float], short_side: int, decoder: str = "auto",
               seconds: tuple[float, float] | None = None) -> tuple[torch.Tensor, int, float]:
    """uint8 (clips, C, T, H, W) of one video at the given start fractions, short side resized,
    from one decode; `seconds` = (start, end) keeps the clips inside that part of the video.
    Also returns the video's frame count and frame rate."""
    found = {}

    def pick(num_frames, fps):
        found.update(num_frames=num_frames, fps=fps)
        first, end = 0, num_frames
        if seconds is not None:
            first = min(int(seconds[0] * fps), num_frames - 1)
            end = max(first + 1, min(num_frames, math.ceil(seconds[1] * fps)))
        return [first + i for s in starts for i in clip_indices(end - first, fps, clip.frames, clip.stride, s)]

    frames = decode(path, pick, decoder)
    frames = resize_short_side(frames.permute(0, 3, 1, 2), short_side)  # (N*T, C, H, W)
    clips = frames.reshape(len(starts), clip.frames, *frames.shape[1:]).transpose(1, 2)
    return clips, found["num_frames"], found["fps"]


def test_views(path, clip: ClipConfig, decoder: str = "auto", seconds=None) -> tuple[torch.Tensor, int, float]:
    """The paper's test views of one video (or of `seconds` of it): clip.num_clips uniform clips x
    clip.num_crops crops, uint8 (views, C, T, test_crop, test_crop), decoded once; with the
    video's frame count and frame rate."""
    clips, num_frames, fps = read_clips(path, clip, uniform_positions(clip.num_clips), clip.test_short, decoder, seconds)
    views = three_crops(clips, clip.test_crop, clip.num_crops)  # M x (N, C, T, crop, crop)
    # NDHWC (channels_last_3d) in memory, the frames' own layout and the network's: one copy.
    views = torch.stack([v.permute(0, 2, 3, 4, 1) for v in views], dim=1).flatten(0, 1).permute(0, 4, 1, 2, 3)
    return views, num_frames, fps


def probe(path, decoder: str = "auto") -> tuple[int, float]:
    """(frame count, frame rate) of a video, decoding one frame."""
    found = {}
    decode(path, lambda num_frames, fps: found.update(num_frames=num_frames, fps=fps) or [0], decoder)
    return found["num_frames"], found["fps"]


# ----------------------------------------------------------------------------- datasets


class VideoDataset(torch.utils.data.Dataset):
    """Clips of a VideoList. Items are dicts:
    train: {"clip": uint8 (C, T, crop, crop), "label", "index", "failures": [(index, reason)]}
    test:  {"clip": uint8 (views, C, T, test_crop, test_crop) or None, "label", "index", "error"}

    Training randomness comes from (seed, epoch, index) only, so that a resumed run and any
    number of loader workers see the same clips. Videos that fail are flagged in a tensor in
    shared memory, so no worker decodes them again in this run; a failed sample is replaced by a
    video already known to decode, so that a bad file is only ever opened by the one worker the
    sampler hands it to.
    """

    def __init__(self, videos: VideoList, clip: ClipConfig, train: bool, decoder: str = "auto", seed: int = 0):
        self.videos, self.clip, self.train, self.decoder, self.seed = videos, clip, train, decoder, seed
        self.epoch = 0
        self.bad = torch.zeros(len(videos.paths), dtype=torch.bool).share_memory_()
        self.good = torch.zeros(len(videos.paths), dtype=torch.bool).share_memory_()

    def __len__(self):
        return len(self.videos.paths)

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        return self._train_item(index) if self.train else self._test_item(index)

    def _read(self, index: int, starts: list[float], short_side: int) -> torch.Tensor:
        return read_clips(self.videos.paths[index], self.clip, starts, short_side, self.decoder)[0]

    def _train_item(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        failures = []
        for _ in range(10):
            if not self.bad[index]:
                try:
                    short = int(rng.integers(self.clip.min_short, self.clip.max_short + 1))
                    clip = self._read(index, [float(rng.random())], short)[0]
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
        y, x = int(rng.integers(h - self.clip.crop + 1)), int(rng.integers(w - self.clip.crop + 1))
        clip = clip[..., y : y + self.clip.crop, x : x + self.clip.crop]
        if rng.random() < 0.5:
            clip = clip.flip(-1)
        return {"clip": clip.contiguous(), "label": self.videos.labels[index], "index": index, "failures": failures}

    def _test_item(self, index: int) -> dict:
        item = {"clip": None, "label": self.videos.labels[index], "index": index, "error": None}
        try:
            item["clip"] = test_views(self.videos.paths[index], self.clip, self.decoder)[0]
        except VideoError as e:
            item["error"] = str(e)
        return item


def collate(items: list[dict]) -> dict:
    """Batch items; test items that failed to decode travel as errors, not clips."""
    good = [it for it in items if it["clip"] is not None]
    batch = {
        "clip": torch.stack([it["clip"] for it in good]) if good else None,
        "label": torch.tensor([it["label"] for it in good], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "failures": [f for it in items for f in it.get("failures", [])],
    }
    batch["failures"] += [(it["index"], it["error"]) for it in items if it.get("error")]
    return batch

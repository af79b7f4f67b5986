"""`sfcli extract`: a network's pooled features (what its classifier reads: Slow's then Fast's
globally pooled res5 channels, 2048 + 256 for a SlowFast R50) for every window of every video.

Each video gets DIR/<its name, see list_videos>.npy of shape (windows, dims) and a sidecar
.json, both written atomically, the sidecar last: a video with a sidecar is done and is skipped by
the next run, and a kill leaves no half-written file. DIR/index.jsonl (one line per video) is
rebuilt from the sidecars at the end of every run. Under torchrun each process takes every
world-th video."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sfcli.checkpoint import resolve_checkpoint
from sfcli.data import test_views
from sfcli.decode import probe
from sfcli.distributed import gather, world
from sfcli.errors import ConfigError, VideoError
from sfcli.files import write_atomic
from sfcli.hub import sha256_of
from sfcli.infer import video_paths, window_bounds
from sfcli.predict import Predictor, view_chunk
from sfcli.transforms import REFERENCE_FPS, normalize
from sfcli.videolist import VIDEO_EXTENSIONS, read_video_list

PATHWAYS = ("both", "slow", "fast")
DTYPES = ("float16", "float32")
INDEX = "index.jsonl"


@dataclass(frozen=True)
class VideoFeatures:
    """One video's features file and what its rows are."""

    video: str
    features: str  # the .npy, relative to the output folder
    windows: tuple[tuple[float, float], ...]  # (start, end) seconds of each row
    fps: float
    seconds: float
    dims: int
    pathway: str
    dtype: str
    network: str
    weights_sha256: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"windows": [list(w) for w in self.windows]}


@dataclass(frozen=True)
class ExtractSummary:
    out: str
    videos: int  # of every process together
    extracted: int
    skipped: int  # done by an earlier run
    failed: tuple[tuple[str, str], ...]  # (video, reason)
    windows: int

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"failed": [{"video": v, "reason": r} for v, r in self.failed]}


def list_videos(inputs) -> list[tuple[Path, Path]]:
    """(video, its features file's name under the output folder, less the suffix): video files as
    given (their file name), the videos inside folders (their path in the folder), and the videos
    of a dataset list (their path under the list's videos' common folder). A video's name depends
    on its own input only, so that a rerun with other inputs still finds the videos it did."""
    out = []
    for item in map(Path, inputs):
        if item.is_file() and item.suffix.lower() not in VIDEO_EXTENSIONS:
            paths = read_video_list(item).paths
            root = Path(os.path.commonpath([p.parent.resolve() for p in paths]))
            out += [(p, p.resolve().relative_to(root)) for p in paths]
        elif item.is_dir():
            out += [(p, p.relative_to(item) if p != item else Path(item.name)) for p in video_paths([item])]
        else:
            out.append((item, Path(item.name)))
    names = Counter(name.with_suffix("") for _, name in out)
    clashes = [str(name) for name, count in names.items() if count > 1]
    if clashes:
        raise ConfigError(f"{len(clashes)} names are given to more than one video (e.g. {clashes[0]}); "
                          f"extract those inputs into separate --out folders")
    return out


def network_span(predictor: Predictor) -> float:
    """Seconds one clip of the network covers: its frames at their stride on the 30 fps time base."""
    return predictor.clip.frames * predictor.clip.stride / REFERENCE_FPS


def pathway_slice(predictor: Predictor, pathway: str) -> slice:
    """Columns of SlowFast.features for `pathway`: Slow's channels come first, then Fast's."""
    model = predictor.model
    slow = model.slow.widths[-1] if model.slow is not None else 0
    fast = model.fast.widths[-1] if model.fast is not None else 0
    if (pathway == "slow" and not slow) or (pathway == "fast" and not fast):
        raise ConfigError(f"the network has no {pathway} pathway; choose --pathway both")
    return {"both": slice(0, slow + fast), "slow": slice(0, slow), "fast": slice(slow, slow + fast)}[pathway]


@torch.inference_mode()
def window_features(predictor: Predictor, path, bounds, columns: slice, decoder: str = "auto") -> torch.Tensor:
    """float32 (windows, dims): each window's first clip of the network's span, centre crop, as
    `sfcli infer` cuts it, through the network up to its pooled features."""
    p = predictor
    clip = dataclasses.replace(p.clip, num_clips=1, num_crops=1)
    views = torch.cat([test_views(path, clip, decoder, span)[0] for span in bounds])
    out = [p.model.features(normalize(part.to(p.device), clip.mean, clip.std))[:, columns].float().cpu()
           for part in views.split(view_chunk(p.device, len(views)))]
    return torch.cat(out)


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def extract(predictor: Predictor, inputs, out, window: float | None = None, stride: float | None = None,
            per_video: bool = False, pathway: str = "both", dtype: str = "float16", decoder: str = "auto",
            on_video=None) -> ExtractSummary:
    """Features of every video of `inputs` into folder `out` (see the module's docstring): one
    row per `window` seconds every `stride` seconds (default: back-to-back clips of the network's
    span), or with `per_video` one row, the mean of those. `on_video(done, total)` after each."""
    if dtype not in DTYPES or pathway not in PATHWAYS:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)} and pathway one of {', '.join(PATHWAYS)}")
    out = Path(out)
    columns = pathway_slice(predictor, pathway)
    window = window or network_span(predictor)
    stride = stride or window
    videos = list_videos(inputs)
    rank, size = world()
    mine = videos[rank::size]
    weights = sha256_of(resolve_checkpoint(predictor.info.path))
    extracted, skipped, failed, rows = 0, 0, [], 0
    for done, (path, name) in enumerate(mine, 1):
        npy = out / name.with_suffix(".npy")
        if npy.with_suffix(".json").is_file():
            skipped += 1
        else:
            try:
                num_frames, fps = probe(path, decoder)
                seconds = num_frames / fps
                bounds = window_bounds(seconds, window, stride)
                features = window_features(predictor, path, bounds, columns, decoder)
                if per_video:
                    features, bounds = features.mean(0, keepdim=True), [(0.0, seconds)]
                _save_npy(npy, features.numpy().astype(dtype))
                record = VideoFeatures(str(path), str(npy.relative_to(out)),
                                       tuple((round(a, 3), round(b, 3)) for a, b in bounds), round(fps, 3),
                                       round(seconds, 3), features.shape[1], pathway, dtype, predictor.info.arch,
                                       weights)
                write_atomic(npy.with_suffix(".json"), json.dumps(record.to_json()) + "\n")
                extracted, rows = extracted + 1, rows + len(bounds)
            except (VideoError, OSError) as err:
                failed.append((str(path), f"cannot be decoded ({err})" if path.exists() else "no such file"))
        if on_video:
            on_video(done, len(mine))
    # Gathering also waits for every process's sidecars before the index is written.
    counts = gather((len(mine), extracted, skipped, failed, rows))
    if rank == 0:
        write_index(out)
    return ExtractSummary(str(out), *(sum(c[i] for c in counts) for i in (0, 1, 2)),
                          tuple(f for c in counts for f in c[3]), sum(c[4] for c in counts))


def read_sidecars(out) -> Iterator[dict]:
    for sidecar in sorted(Path(out).rglob("*.json")):
        if sidecar.with_suffix(".npy").is_file():
            yield json.loads(sidecar.read_text())


def write_index(out) -> Path:
    """DIR/index.jsonl from every finished video's sidecar, in path order."""
    return write_atomic(Path(out) / INDEX, "".join(json.dumps(entry) + "\n" for entry in read_sidecars(out)))

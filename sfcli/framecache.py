"""Every frame of a small dataset, decoded once and held in memory for the whole run.

On a small dataset (the built-in benchmark, a few hundred short clips of one's own) decoding the
same files again every epoch costs about as much as the training step, on the same cores. A
FrameCache decodes each video once, with the loader's workers, and then hands out the frames
that a decoder would: the clips, and so the run, are bit-identical with and without it. Videos
that fail to decode keep their reason and fail again the same way. A dataset whose decoded frames
exceed the memory budget is not cached: decoding stops as soon as the budget is passed.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from sfcli.decode import decode, in_order, resized
from sfcli.errors import VideoError


def _all_frames(path, decoder: str):
    """(every frame (N, H, W, 3) uint8, fps, decode's notes), or the reason the video does not decode."""
    found, notes = {}, []

    def every_frame(num_frames, fps):
        found["fps"] = fps
        return list(range(num_frames))

    try:
        return decode(path, every_frame, decoder, notes=notes), found["fps"], tuple(notes)
    except VideoError as e:
        return str(e)


class _Videos(torch.utils.data.Dataset):
    def __init__(self, paths, decoder):
        self.paths, self.decoder = paths, decoder

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return index, _all_frames(self.paths[index], self.decoder)


class FrameCache:
    """Decoded frames by path, with what decode noted of each; `read` answers as decode does."""

    def __init__(self, entries: dict[Path, tuple[torch.Tensor, float, tuple[str, ...]] | str], decoder: str):
        self.entries, self.decoder = entries, decoder

    @property
    def nbytes(self) -> int:
        return sum(e[0].nbytes for e in self.entries.values() if not isinstance(e, str))

    @classmethod
    def build(cls, paths, decoder: str, budget_mb: int, workers: int = 2, progress=None) -> FrameCache | None:
        """Decode every video of `paths`; None when their frames need more than budget_mb.
        progress(done, total) is called per video."""
        paths = list(dict.fromkeys(Path(p) for p in paths))
        loader = torch.utils.data.DataLoader(_Videos(paths, decoder), batch_size=None, num_workers=workers)
        entries, total = {}, 0
        for done, (index, entry) in enumerate(loader, 1):
            entries[paths[index]] = entry
            total += 0 if isinstance(entry, str) else entry[0].nbytes
            if total > budget_mb * 2**20:
                return None
            if progress is not None:
                progress(done, len(paths))
        return cls(entries, decoder)

    def __contains__(self, path) -> bool:
        return Path(path) in self.entries

    def read(self, path, pick_indices, resize=None, notes: list[str] | None = None) -> torch.Tensor:
        """What sfcli.decode.decode(path, pick_indices, decoder, resize, notes) returns for this video."""
        entry = self.entries[Path(path)]
        if isinstance(entry, str):
            raise VideoError(entry)
        frames, fps, decode_notes = entry
        if notes is not None:
            notes += decode_notes
        indices = pick_indices(len(frames), fps)
        wanted = sorted(set(indices))
        return in_order(resized(frames[wanted].numpy(), resize), wanted, indices)


def read_frames(path, pick_indices, decoder: str | FrameCache = "auto", resize=None,
                notes: list[str] | None = None) -> torch.Tensor:
    """decode(), from the cache when `decoder` is one that holds the video."""
    if isinstance(decoder, FrameCache):
        return decoder.read(path, pick_indices, resize, notes) if path in decoder else \
            decode(path, pick_indices, decoder.decoder, resize, notes)
    return decode(path, pick_indices, decoder, resize, notes)


def run_videos(train_videos, val_videos) -> list[Path]:
    return train_videos.paths + (val_videos.paths if val_videos is not None else [])


def cached_decoder(paths, cfg, reporter) -> str | FrameCache:
    """A FrameCache of `paths` where they fit in cfg.frame_cache_mb (0: never), else the name of
    cfg's decoder; one line says which."""
    decoder, budget_mb = cfg.decoder, cfg.frame_cache_mb
    if budget_mb <= 0:
        return decoder
    began = time.perf_counter()
    task = reporter.task("decoding once", total=len(paths))
    cache = FrameCache.build(paths, decoder, budget_mb, cfg.workers,
                             lambda done, total: reporter.update(task, done, done / (time.perf_counter() - began)))
    reporter.done(task)
    if cache is None:
        reporter.print(f"the videos' frames need more than {budget_mb} MB (--frame-cache-mb): "
                       "decoding them every epoch")
        return decoder
    reporter.print(f"decoded {len(cache.entries)} videos once into memory ({cache.nbytes / 2**20:.0f} MB, "
                   f"{time.perf_counter() - began:.0f} s): every epoch reads their frames from there")
    return cache

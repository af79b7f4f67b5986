"""Training clips per second of sfcli's loader against PySlowFast's way of loading the same clips.

Every row yields the network's input, normalised float clips of the same videos with the same
draws (window start, short side, crop, flip: sfcli's per-(seed, epoch, index) randomness), from
the same number of DataLoader workers; sfcli's uint8 clips are normalised in the main process,
as its training loop does. Rates are steady state: counted from the first batch's arrival, so
that the workers' start-up is left out. Rows:

- reference, PySlowFast's Kinetics loader with its PyAV backend: seek to the window (1024 pts of
  margin), decode it, convert every frame in it to RGB, pick the clip's frames, normalise in
  float at full size, rescale the short side with bilinear `interpolate` in float, crop, flip;
- PySlowFast's decode (every frame of the window converted) with sfcli's transforms: shows how
  much of the difference is the decoding;
- sfcli with its PyAV fallback, and sfcli as it runs (decord).

Usage: python benchmarks/bench_loader.py [--videos 48] [--workers 2] [--repeats 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from sfcli.data import VideoDataset, collate
from sfcli.decode import BACKENDS, decode, resized
from sfcli.presets import build_config, clip_config
from sfcli.transforms import clip_indices, normalize
from sfcli.videolist import read_video_list


def write_videos(root: Path, count: int, size=(256, 340), frames=90, fps=30):
    """Textured frames with a moving pattern, so the codec does real work, as Kinetics files would."""
    rng = np.random.default_rng(0)
    for i in range(count):
        path = root / f"class{i % 2}" / f"v{i}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        texture = rng.integers(0, 256, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width, stream.pix_fmt = size[0], size[1], "yuv420p"
            for t in range(frames):
                image = np.roll(texture, (2 * t, 3 * t), axis=(0, 1))
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def pyslowfast_decode(path: Path, pick_indices, resize):
    """PySlowFast's PyAV decode: seek to the window with 1024 pts of margin, decode it, convert
    every frame whose pts lies in it, then index the clip's frames."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        indices = pick_indices(stream.frames, fps)
        timebase = stream.duration / stream.frames
        first_pts, last_pts = int(min(indices) * timebase), int(max(indices) * timebase)
        container.seek(max(first_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
        window = {}
        for frame in container.decode(stream):
            if frame.pts >= first_pts:
                window[round(frame.pts / timebase)] = frame
            if frame.pts >= last_pts:
                break
        rgb = {i: frame.to_rgb().to_ndarray() for i, frame in window.items()}
    wanted = sorted(set(indices))
    return resized(np.stack([rgb[i] for i in wanted]), resize), wanted, indices


class PySlowFastStyle(VideoDataset):
    """PySlowFast's training transforms after its decode, with sfcli's draws: normalise at full
    size in float, bilinear short-side rescale in float, crop, flip."""

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        short, start = int(rng.integers(self.clip.min_short, self.clip.max_short + 1)), float(rng.random())

        def pick(num_frames, fps):
            return clip_indices(num_frames, fps, self.clip.frames, self.clip.stride, start)

        frames = decode(self.videos.paths[index], pick, "pyslowfast")  # (T, H, W, C) uint8
        frames = ((frames.float() / 255 - self.clip.mean) / self.clip.std).permute(3, 0, 1, 2)  # (C, T, H, W)
        h, w = frames.shape[-2:]
        size = (short, round(w * short / h)) if h <= w else (round(h * short / w), short)
        frames = torch.nn.functional.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        y, x = int(rng.integers(size[0] - self.clip.crop + 1)), int(rng.integers(size[1] - self.clip.crop + 1))
        frames = frames[..., y : y + self.clip.crop, x : x + self.clip.crop]
        if rng.random() < 0.5:
            frames = frames.flip(-1)
        return {"clip": frames.contiguous(), "label": self.videos.labels[index], "index": index, "failures": []}


def clips_per_second(dataset, workers: int, batch_size: int = 4) -> float:
    """Steady-state rate: clips after the first batch over the time since it arrived."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    count, start = 0, None
    for batch in loader:
        clips = batch["clip"]
        if clips.dtype == torch.uint8:
            clips = normalize(clips, dataset.clip.mean, dataset.clip.std)
        if start is None:
            start = time.perf_counter()
            continue
        count += len(clips)
    return count / (time.perf_counter() - start)


ROWS = {
    "pyslowfast": "PySlowFast's loader (reference)",
    "pyslowfast-decode": "PySlowFast's decode, sfcli's transforms",
    "pyav": "sfcli, PyAV fallback",
    "auto": "sfcli (decord)",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--arch", default="slowfast_4x16_r50")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    BACKENDS["pyslowfast"] = pyslowfast_decode
    clip = clip_config(build_config(args.arch), args.arch, args.crop)
    with tempfile.TemporaryDirectory() as tmp:
        write_videos(Path(tmp), args.videos)
        videos = read_video_list(tmp)
        datasets = {
            "pyslowfast": PySlowFastStyle(videos, clip, train=True, seed=0),
            "pyslowfast-decode": VideoDataset(videos, clip, train=True, decoder="pyslowfast", seed=0),
            "pyav": VideoDataset(videos, clip, train=True, decoder="pyav", seed=0),
            "auto": VideoDataset(videos, clip, train=True, decoder="auto", seed=0),
        }
        rates = {name: [] for name in datasets}
        for _ in range(args.repeats):  # alternated, so that load from elsewhere falls on every row alike
            for name, dataset in datasets.items():
                rates[name].append(clips_per_second(dataset, args.workers))
    rows = {name: max(r) for name, r in rates.items()}
    result = {
        "arch": args.arch, "clip": f"{clip.frames} frames, stride {clip.stride}, crop {clip.crop}",
        "video": "340x256 H.264, 30 fps", "workers": args.workers, "videos": args.videos,
        "clips_per_s": rows, "ratio_vs_reference": rows["auto"] / rows["pyslowfast"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"loader, {result['clip']}, {result['video']}, {args.workers} workers, "
                        f"{args.videos} videos, best of {args.repeats}")
    for column in ("loader", "clips/s", "vs reference"):
        table.add_column(column)
    for name, rate in rows.items():
        table.add_row(ROWS[name], f"{rate:.1f}", f"{rate / rows['pyslowfast']:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()

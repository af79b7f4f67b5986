"""Training clips per second of sfcli's loader against a plain PyAV decode of the same clips.

The reference decodes the way PySlowFast's PyAV path does: decode every frame of the clip's
window and convert each to RGB, then index the clip's frames. Both rows run the same dataset
code (sampling, short-side jitter, crop, flip) on the same clips with the same workers; only the
decoder differs. Usage: python benchmarks/bench_loader.py [--videos 24] [--workers 2] [--json]
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

from sfcli import data
from sfcli.model import build_config


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


def reference_pyav(path: Path, pick_indices):
    """Decode the whole window with PyAV, converting every frame, then index (PySlowFast's way)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate)
        indices = pick_indices(stream.frames, fps)
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_rgb().to_ndarray())
            if len(frames) > max(indices):
                break
    wanted = sorted(set(indices))
    return np.stack(frames)[wanted], wanted, indices


def clips_per_second(dataset, workers: int, batch_size: int = 4) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=data.collate)
    start, count = time.perf_counter(), 0
    for batch in loader:
        count += len(batch["clip"])
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--arch", default="slowfast_4x16_r50")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data.BACKENDS["pyav-reference"] = reference_pyav
    clip = data.ClipConfig.for_model(build_config(args.arch), crop=args.crop)
    with tempfile.TemporaryDirectory() as tmp:
        write_videos(Path(tmp), args.videos)
        videos = data.read_video_list(tmp)
        rows = {}
        for name in ("pyav-reference", "pyav", "auto"):
            dataset = data.VideoDataset(videos, clip, train=True, decoder=name, seed=0)
            rows[name] = max(clips_per_second(dataset, args.workers) for _ in range(args.repeats))
    result = {
        "arch": args.arch, "clip": f"{clip.frames} frames, stride {clip.stride}, crop {clip.crop}",
        "video": "340x256 H.264, 30 fps", "workers": args.workers, "videos": args.videos,
        "clips_per_s": rows, "ratio_vs_reference": rows["auto"] / rows["pyav-reference"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"loader, {result['clip']}, {result['video']}, {args.workers} workers")
    for column in ("decoder", "clips/s", "vs reference"):
        table.add_column(column)
    labels = {"pyav-reference": "PyAV, reference style", "pyav": "sfcli, PyAV fallback", "auto": "sfcli (decord)"}
    for name, rate in rows.items():
        table.add_row(labels[name], f"{rate:.1f}", f"{rate / rows['pyav-reference']:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()

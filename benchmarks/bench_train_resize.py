"""What the training views' resize costs or gains: sfcli's antialiased bilinear short-side resize
(uint8, long side rounded) against the reference's (bilinear without antialiasing, long side
floored, as sfcli's test views do), each training slowfast_tiny on the built-in benchmark for
--epochs epochs with each of --seeds seeds. The training clips differ only in that resize (the
same draws of window, short side, crop and flip); validation (1x1 views) and test views are the
reference's in both. Prints final validation top-1 per seed, its mean, and clips/s of training.

Usage: python benchmarks/bench_train_resize.py [--epochs 4] [--seeds 0 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from machine import cpu_name
from rich.console import Console
from rich.table import Table

from sfcli import data
from sfcli.ablate import BUILTIN_ARCH, builtin_dataset
from sfcli.console import Reporter
from sfcli.presets import build_config, clip_config
from sfcli.recipe import TrainConfig
from sfcli.training import train
from sfcli.transforms import resize_short_side, scale_short_side
from sfcli.videolist import read_video_list

RESIZES = {"antialiased (sfcli's training views)": resize_short_side,
           "reference (no antialiasing, floored)": scale_short_side}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    root = builtin_dataset()
    videos = read_video_list(root / "train.csv")
    val = read_video_list(root / "val.csv", classes=videos.classes)
    model = build_config(BUILTIN_ARCH, num_classes=len(videos.classes))
    clip = clip_config(model, BUILTIN_ARCH, views=(1, 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, resize in RESIZES.items():
            data.resize_short_side = resize  # the training clips' resize (frames are in memory: one process)
            results = [train(Path(tmp) / f"{resize.__name__}-{seed}", videos, model, clip,
                             TrainConfig(epochs=args.epochs, seed=seed, workers=0), val, BUILTIN_ARCH,
                             Reporter(enabled=False)) for seed in args.seeds]
            top1 = [r.history[-1].val_top1 for r in results]
            rate = statistics.mean(h.clips_per_s for r in results for h in r.history)
            rows.append({"resize": name, "val_top1": top1, "mean_top1": round(statistics.mean(top1), 2),
                         "train_clips_per_s": round(rate, 1)})
    data.resize_short_side = resize_short_side
    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "epochs": args.epochs, "seeds": args.seeds,
              "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{result['cpu']}, {result['threads']} threads: {BUILTIN_ARCH}, built-in benchmark, "
                        f"{args.epochs} epochs, seeds {', '.join(map(str, args.seeds))}")
    for column in ("training resize", "val top-1 per seed", "mean", "train clips/s"):
        table.add_column(column, justify="left" if column == "training resize" else "right")
    for row in rows:
        table.add_row(row["resize"], ", ".join(f"{t:.1f}" for t in row["val_top1"]), f"{row['mean_top1']:.1f}",
                      f"{row['train_clips_per_s']:.1f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

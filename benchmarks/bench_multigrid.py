"""Time to accuracy with and without --multigrid, on the built-in benchmark (slowfast_tiny, the
`sfcli synth` default videos, batch 16, one process).

The default recipe (cosine, --epochs N) runs first; its final validation top-1 (1x1 views) is the
target. Then multigrid runs, standing in for each of --multigrid-epochs epochs of the stepwise
recipe (1.5x as many, cheaper, epochs), at the recipe's base rate or at each of --multigrid-lr
(multigrid scales it by each phase's batch, up to 8x). A run's time to accuracy is its training seconds (loading
and steps, validation left out) until the end of the first epoch whose validation top-1 is within
one point of the target; the ratio is that time over the default recipe's.

--ingredients also trains the default recipe on each of multigrid's parts alone: at each
long-cycle shape (batch 16, trained at that shape, its stride drawn per clip, and validated at
that shape at the full clip's stride), and at the full shape with the
long cycle's larger batches and linearly scaled rates, to show which of them this data rewards.

Usage: python benchmarks/bench_multigrid.py [--epochs 8] [--multigrid-epochs 8 16] [--multigrid-lr 0.0125 ...]
       [--ingredients] [--train-per-class 100] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import tempfile
from pathlib import Path

import torch
from machine import cpu_name
from rich.console import Console
from rich.table import Table

from sfcli import multigrid
from sfcli.ablate import BUILTIN_ARCH, BUILTIN_SYNTH, builtin_dataset
from sfcli.console import Reporter
from sfcli.data import ClipConfig
from sfcli.presets import build_config, clip_config
from sfcli.recipe import TrainConfig
from sfcli.synth import write_dataset
from sfcli.training import train
from sfcli.videolist import read_video_list

BUILTIN_TRAIN_PER_CLASS = inspect.signature(write_dataset).parameters["train_per_class"].default


def builtin_clip() -> ClipConfig:
    return clip_config(build_config(BUILTIN_ARCH), BUILTIN_ARCH, views=(1, 1))


def run(root: Path, folder: Path, cfg: TrainConfig, clip: ClipConfig | None = None) -> list[tuple[int, float, float]]:
    """(epoch, cumulative training seconds, val top-1) of each epoch of one run on the dataset in `root`."""
    videos = read_video_list(root / "train.csv")
    val = read_video_list(root / "val.csv", classes=videos.classes)
    model = build_config(BUILTIN_ARCH, num_classes=len(videos.classes))
    result = train(folder, videos, model, clip or builtin_clip(), cfg, val, BUILTIN_ARCH, Reporter(enabled=False))
    out, total = [], 0.0
    for record in result.history:
        total += record.seconds
        out.append((record.epoch, total, record.val_top1))
    return out


def dataset(folder: Path, train_per_class: int) -> Path:
    """The built-in benchmark, or one written in `folder` by its generator with more or fewer
    training videos per class."""
    if train_per_class == BUILTIN_TRAIN_PER_CLASS:
        return builtin_dataset()
    write_dataset(folder, train_per_class=train_per_class, workers=os.cpu_count() or 1, **BUILTIN_SYNTH)
    return folder


def time_to(history, target: float) -> tuple[float | None, int | None]:
    return next(((s, e) for e, s, top1 in history if top1 >= target - 1), (None, None))


def ingredients(root: Path, folder: Path, default: TrainConfig) -> list[dict]:
    """The default recipe at each long-cycle shape alone, then at the full shape with each larger
    long-cycle batch and its linearly scaled rate."""
    rows, clip = [], builtin_clip()
    for t, side in multigrid.LONG_CYCLE:
        shape = multigrid.Phase(stage=0, batch_factor=1, frames_factor=t, side_factor=side, end=0, lr_scale=1)
        (_, coarse), = multigrid.step_clips(clip, shape, short_cycle=False)
        coarse = dataclasses.replace(coarse, test_short=coarse.min_short, test_crop=coarse.crop)
        history = run(root, folder / f"shape{t}x{side:.2f}", default, coarse)
        strides = f"{coarse.stride}-{coarse.max_stride}" if coarse.max_stride else f"{coarse.stride}"
        rows.append({"run": f"{coarse.frames} frames at stride {strides}, {coarse.crop}² crops",
                     "batch": default.batch_size, "lr": default.base_lr, "final_top1": history[-1][2],
                     "total_seconds": history[-1][1]})
    for factor in sorted({p.batch_factor for p in multigrid.schedule(default.epochs)} - {1}):
        cfg = dataclasses.replace(default, batch_size=default.batch_size * factor, lr=default.base_lr * factor)
        history = run(root, folder / f"batch{factor}", cfg)
        rows.append({"run": f"full shape, {factor}x the batch", "batch": cfg.batch_size, "lr": cfg.base_lr,
                     "final_top1": history[-1][2], "total_seconds": history[-1][1]})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--multigrid-epochs", type=int, nargs="+", default=[TrainConfig.epochs, 2 * TrainConfig.epochs])
    parser.add_argument("--multigrid-lr", type=float, nargs="+", default=[None],
                        help="base rates of the multigrid runs (default: the recipe's, 0.1 per 64 clips)")
    parser.add_argument("--ingredients", action="store_true", help="also train on multigrid's parts alone")
    parser.add_argument("--train-per-class", type=int, default=BUILTIN_TRAIN_PER_CLASS,
                        help="training videos per class: other than the built-in benchmark's 100, the same "
                             "generator writes a dataset of that many (the 160 validation videos alike)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = dataset(Path(tmp) / "data", args.train_per_class)
        # Every dataset's frames decoded once, in memory (the built-in one's are 720 MB).
        default = TrainConfig(epochs=args.epochs, workers=0, frame_cache_mb=16384)
        history = run(root, Path(tmp) / "default", default)
        target = history[-1][2]
        seconds, epoch = time_to(history, target)
        rows.append({"run": f"default recipe, {args.epochs} epochs", "lr": default.base_lr, "epochs": len(history),
                     "final_top1": target, "seconds_to_target": seconds, "epoch_reached": epoch,
                     "total_seconds": history[-1][1]})
        for e, lr in ((e, lr) for e in args.multigrid_epochs for lr in args.multigrid_lr):
            cfg = dataclasses.replace(default, epochs=e, multigrid=True, lr=lr)
            history = run(root, Path(tmp) / f"multigrid{e}-{lr}", cfg)
            s, epoch = time_to(history, target)
            name = f"--multigrid --epochs {e}" + (f" --lr {lr:g}" if lr is not None else "")
            rows.append({"run": name, "lr": cfg.base_lr, "epochs": len(history), "final_top1": history[-1][2],
                         "seconds_to_target": s, "epoch_reached": epoch, "total_seconds": history[-1][1]})
        parts = ingredients(root, Path(tmp), default) if args.ingredients else []
    reference = rows[0]["seconds_to_target"]
    for row in rows:
        s = row["seconds_to_target"]
        row["ratio"] = None if s is None else round(s / reference, 3)
    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "train_per_class": args.train_per_class,
              "target_top1": target, "rows": rows,
              "ingredients": parts}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    data = ("built-in benchmark" if args.train_per_class == BUILTIN_TRAIN_PER_CLASS
            else f"synth, {args.train_per_class} training videos per class")
    table = Table(title=f"{result['cpu']}, {result['threads']} threads: time to {target:.1f}% - 1 val top-1 "
                        f"({BUILTIN_ARCH}, {data}, batch 16)")
    for column in ("run", "base lr", "epochs", "final val top-1", "reached at epoch", "seconds to target",
                   "all seconds", "time / default"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        reached = row["ratio"] is not None
        table.add_row(row["run"], f"{row['lr']:g}", str(row["epochs"]), f"{row['final_top1']:.1f}",
                      str(row["epoch_reached"]) if reached else "not reached",
                      f"{row['seconds_to_target']:.1f}" if reached else "-", f"{row['total_seconds']:.1f}",
                      f"{row['ratio']:.2f}x" if reached else "-")
    console = Console(width=160)
    console.print(table)
    if parts:
        table = Table(title=f"the default recipe ({args.epochs} epochs) on multigrid's parts alone")
        for column in ("run", "batch", "base lr", "final val top-1", "all seconds"):
            table.add_column(column, justify="left" if column == "run" else "right")
        for row in parts:
            table.add_row(row["run"], str(row["batch"]), f"{row['lr']:g}", f"{row['final_top1']:.1f}",
                          f"{row['total_seconds']:.1f}")
        console.print(table)


if __name__ == "__main__":
    main()

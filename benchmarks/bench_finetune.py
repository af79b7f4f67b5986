"""Fine-tuning against training from scratch at equal budget, on real video files made here.

slowfast_tiny is pre-trained on the eight default `sfcli synth` classes (the built-in benchmark's
dataset, 100 videos a class, `sfcli train`'s defaults: 8 epochs, batch 16), then trained on eight
other classes (four new shapes, four new motions) from --train-per-class videos a class, four
ways with the same epochs, batch and steps: from scratch (the scratch recipe), fully fine-tuned,
with everything up to res4 frozen (--freeze res4), and as a linear probe (--freeze res5), the last
three with `--init`'s defaults. Each is tested as `sfcli eval` tests it, on --val-per-class
videos a class (1x3 views).

Every run is a run folder under --out, so a second call reuses the finished ones (a killed one
resumes) and prints the same table. Training seconds are the runs' own (tests left out).

Usage: python benchmarks/bench_finetune.py [--out runs/bench-finetune] [--epochs 20] [--batch-size 8]
       [--train-per-class 10] [--val-per-class 20] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from machine import cpu_name
from rich.table import Table

from sfcli.ablate import BUILTIN_EPOCHS, BUILTIN_VIEWS, builtin_dataset
from sfcli.console import make_console
from sfcli.evaluation import evaluate_checkpoint
from sfcli.finetune import finetune_defaults, prepare_init
from sfcli.presets import build_config, clip_config
from sfcli.recipe import TrainConfig
from sfcli.synth import write_dataset
from sfcli.training import train
from sfcli.videolist import read_video_list

ARCH = "slowfast_tiny"
NEW_CLASSES = ["square", "diamond", "x", "hourglass", "bouncing", "resting", "blinking", "pulsing"]
ROWS = (  # (key, as the table names it, what it trains, --freeze)
    ("scratch", "from scratch", "everything", None),
    ("full", "fine-tuned", "everything", None),
    ("freeze-res4", "fine-tuned, --freeze res4", "res5, classifier", "res4"),
    ("probe", "linear probe, --freeze res5", "classifier", "res5"),
)


def read_split(root: Path):
    train_videos = read_video_list(root / "train.csv")
    return train_videos, read_video_list(root / "val.csv", classes=train_videos.classes)


def run(folder: Path, train_videos, recipe: TrainConfig, finetune=None, val_videos=None):
    cfg = finetune.config if finetune else build_config(ARCH, num_classes=len(train_videos.classes))
    return train(folder, train_videos, cfg, clip_config(cfg, ARCH, None, BUILTIN_VIEWS), recipe, val_videos, ARCH,
                 finetune=finetune)


def row(folder: Path, data: Path, recipe: TrainConfig, finetune=None) -> dict:
    """A run on the new classes, then tested as `sfcli eval` tests it (no validation after each
    epoch: on 80 training videos it would cost more than the training)."""
    train_videos = read_video_list(data / "train.csv")
    result = run(folder, train_videos, recipe, finetune)
    test = evaluate_checkpoint(folder, data / "val.csv", views=BUILTIN_VIEWS, workers=0).test
    return {"top1": test.top1, "top5": test.top5, "train_seconds": round(sum(h.seconds for h in result.history), 1),
            "steps": recipe.epochs * (len(train_videos.paths) // recipe.batch_size),  # the loop's: full batches
            "lr": recipe.base_lr, "warmup_epochs": recipe.warmup_epochs, "run": str(folder)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-finetune", type=Path)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-per-class", type=int, default=10)
    parser.add_argument("--val-per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="Of the four runs (the pre-training's is 0).")
    parser.add_argument("--json", action="store_true", help="Print the JSON only.")
    args = parser.parse_args()

    pretrain = args.out / "pretrain"
    train_videos, val_videos = read_split(builtin_dataset())
    source = run(pretrain, train_videos, TrainConfig(epochs=BUILTIN_EPOCHS), val_videos=val_videos)
    data = args.out / f"data-{args.train_per_class}-{args.val_per_class}"
    if not (data / "val.csv").is_file():
        write_dataset(data, classes=NEW_CLASSES, train_per_class=args.train_per_class,
                      val_per_class=args.val_per_class)
    rows = []
    for key, name, trains, freeze in ROWS:
        folder = args.out / f"{key}-seed{args.seed}"
        if key == "scratch":
            recipe = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
            measured = row(folder, data, recipe)
        else:
            lr, warmup = finetune_defaults(None, None, args.batch_size)
            recipe = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lr, warmup_epochs=warmup,
                                 seed=args.seed)
            classes = read_video_list(data / "train.csv").classes
            measured = row(folder, data, recipe, prepare_init(pretrain, folder, len(classes), classes=classes,
                                                              freeze=freeze))
        rows.append({"row": name, "trains": trains, **measured})
    result = {"cpu": f"{cpu_name()}, {torch.get_num_threads()} threads", "arch": ARCH,
              "pretrain": {"classes": len(train_videos.classes), "videos": len(train_videos.paths),
                           "epochs": BUILTIN_EPOCHS, "top1": source.test.top1,
                           "train_seconds": round(sum(h.seconds for h in source.history), 1), "run": str(pretrain)},
              "classes": NEW_CLASSES, "train_per_class": args.train_per_class, "val_per_class": args.val_per_class,
              "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed, "rows": rows}
    if not args.json:
        title = (f"{ARCH}, {len(NEW_CLASSES)} new synth classes, {args.train_per_class} train / {args.val_per_class} "
                 f"val videos each, {args.epochs} epochs, batch {args.batch_size}, seed {args.seed}")
        table = Table(title=title, caption=result["cpu"], min_width=len(title))
        for column in ("start", "trains", "top-1", "top-5", "lr", "train s"):
            table.add_column(column)
        for r in rows:
            table.add_row(r["row"], r["trains"], f"{r['top1']:.1f}", f"{r['top5']:.1f}", f"{r['lr']:g}",
                          f"{r['train_seconds']:.0f}")
        console = make_console()  # wide lines when piped, as sfcli prints them
        console.print(table)
        pre = result["pretrain"]
        console.print(f"pre-trained on the {pre['classes']} default classes ({pre['videos']} videos, "
                        f"{pre['epochs']} epochs): top-1 {pre['top1']:.1f} on their val, {pre['train_seconds']:.0f} s")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

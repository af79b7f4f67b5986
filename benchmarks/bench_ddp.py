"""Step time of `sfcli train` under torchrun, 2 gloo processes on the CPU, before and after the
loop kept each step's loss and accuracy sums on the device (one all_reduce every 20 steps and
at the epoch's end, instead of an all_reduce of the sums, an all_gather_object of the bad videos
and an all_reduce of the stop signal after every step).

Both versions are sfcli's own code at two commits (`git archive` into a temporary folder, run
with PYTHONPATH pointing there), alternated (before, after, after, before, ...) on the same
generated dataset with the same options. A step's time is an epoch's seconds in metrics.jsonl
over its steps (the loader's time included, the same for both), the first epoch left out as
warm-up.

Usage: python benchmarks/bench_ddp.py [--rounds 3] [--videos 80] [--epochs 3] [--before REF] [--after REF]
(default: --after the commit that added sfcli/stepsums.py, --before the one before it, so that the
table measures that change alone; --after HEAD measures today's loop)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import torch
from machine import cpu_name
from rich.console import Console
from rich.table import Table

from sfcli.synth import write_dataset

REPO = Path(__file__).resolve().parent.parent
BATCH, CROP = 8, 32


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


def extract(ref: str, into: Path) -> Path:
    """sfcli's package as it was at `ref`, unpacked into `into`."""
    archive = subprocess.run(["git", "archive", ref, "sfcli"], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def step_seconds(tree: Path, data: Path, run: Path, epochs: int, steps: int) -> float:
    """Mean seconds per step of epochs 2.. of one torchrun training of the sfcli in `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    where = subprocess.run([sys.executable, "-c", "import sfcli; print(sfcli.__file__)"], cwd=run.parent, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(tree)), f"{where} is not the sfcli under {tree}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "sfcli",
               "train", "--data", str(data / "train.csv"), "--arch", "slowfast_tiny", "--crop", str(CROP),
               "--batch-size", str(BATCH), "--workers", "0", "--device", "cpu", "--epochs", str(epochs),
               "--out", str(run)]
    result = subprocess.run(command, cwd=run.parent, env=env, capture_output=True, text=True)  # cwd: not this repo
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    seconds = [r["seconds"] for r in records if "kind" not in r][1:]
    return sum(seconds) / (len(seconds) * steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--videos", type=int, default=80, help="training videos per class (4 classes)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--after")
    parser.add_argument("--before")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first is warm-up)")
    added = git("log", "-1", "--diff-filter=A", "--format=%H", "--", "sfcli/stepsums.py")
    refs = {"before": git("rev-parse", "--short", args.before or f"{added}^"),
            "after": git("rev-parse", "--short", args.after or added)}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_dataset(tmp / "data", classes=4, train_per_class=args.videos, val_per_class=0, size=(48, 48),
                      frames=40)
        trees = {name: extract(ref, tmp / name) for name, ref in refs.items()}
        times, steps = {name: [] for name in refs}, 4 * args.videos // BATCH
        for round_ in range(args.rounds):
            for name, tree in list(trees.items())[:: 1 if round_ % 2 == 0 else -1]:  # ABBA: drift falls on both
                times[name].append(step_seconds(tree, tmp / "data", tmp / f"{name}{round_}", args.epochs, steps))

    table = Table(title=f"sfcli train under torchrun: 2 gloo processes, 1 thread each, on {cpu_name()} "
                        f"({os.cpu_count()} cores), torch {torch.__version__}; slowfast_tiny, {CROP}² crop, batch "
                        f"{BATCH} ({BATCH // 2} a process), {steps} steps an epoch, epochs 2-{args.epochs} "
                        f"of {args.rounds} alternated runs each")
    for column in ("sfcli", "collectives", "mean step (ms)", "best run (ms)", "runs (ms)", "speed-up (mean)"):
        table.add_column(column, justify="left" if column in ("sfcli", "collectives") else "right")
    collectives = {"before": "3 per step (all_reduce, all_gather_object, all_reduce)",
                   "after": "1 all_reduce per 20 steps, 1 all_gather_object per epoch"}
    base = statistics.mean(times["before"])
    for name, ref in refs.items():
        mean = statistics.mean(times[name])
        table.add_row(f"{name} ({ref})", collectives[name], f"{1000 * mean:.1f}", f"{1000 * min(times[name]):.1f}",
                      " ".join(f"{1000 * t:.1f}" for t in times[name]), f"{base / mean:.2f}x")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()

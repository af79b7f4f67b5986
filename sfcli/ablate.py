"""`sfcli ablate`: the paper's Table 5 (Feichtenhofer et al., ICCV 2019) as one command.

Each study trains and tests its variants through the one train/eval loop, each in its own run
folder, so a sweep resumes where it stopped and a finished variant is never trained again.
Without data of its own, a study runs on the built-in synthetic dataset with the small preset.
From given weights (`--init`), every variant starts with the tensors of them that fit its network.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from sfcli.console import Reporter
from sfcli.cost import count_gflops
from sfcli.distributed import is_main_process
from sfcli.errors import AblationError
from sfcli.finetune import SharedInit
from sfcli.framecache import cached_decoder, run_videos
from sfcli.model_config import ModelConfig, parse_fraction
from sfcli.presets import build_config, clip_config
from sfcli.recipe import TrainConfig
from sfcli.runs import TEST_FILE
from sfcli.training import train
from sfcli.videolist import VideoList

STUDIES = ("pathways", "beta", "lateral", "fast-input")
PAPER_BETAS = ("1/4", "1/6", "1/8", "1/12", "1/16", "1/32")

# The paper's Kinetics-400 figures (SlowFast 4x16 R50, Table 5): top-1, top-5, GFLOPs.
PAPER = {
    ("pathways", "slow"): (72.6, 90.3, 27.3),
    ("pathways", "fast"): (51.7, 78.5, 6.4),
    ("pathways", "slowfast"): (75.6, 92.1, 36.1),
    ("lateral", "none"): (73.5, 90.3, 34.2),
    ("lateral", "ttoc-sum"): (74.5, 91.3, 34.2),
    ("lateral", "ttoc-concat"): (74.3, 91.0, 39.8),
    ("lateral", "t-sample"): (75.4, 91.8, 34.9),
    ("lateral", "t-conv"): (75.6, 92.1, 36.1),
    ("beta", "1/4"): (75.6, 91.7, 54.5),
    ("beta", "1/6"): (75.8, 92.0, 41.8),
    ("beta", "1/8"): (75.6, 92.1, 36.1),
    ("beta", "1/12"): (75.2, 91.8, 32.8),
    ("beta", "1/16"): (75.1, 91.7, 30.6),
    ("beta", "1/32"): (74.2, 91.3, 28.6),
    ("fast-input", "rgb"): (75.6, 92.1, 36.1),
    ("fast-input", "half"): (74.7, 91.8, 34.4),
    ("fast-input", "gray"): (75.5, 91.9, 34.1),
    ("fast-input", "timediff"): (74.5, 91.6, 34.2),
}

# The built-in benchmark: `sfcli synth` defaults, generated once into the cache folder.
# 16 epochs at 40² crops: SlowFast past 90% on every seed tried (at 8 epochs and 48², 56 to 100%
# by seed, for 1.5x less time).
BUILTIN_ARCH = "slowfast_tiny"
BUILTIN_CROP = 40
BUILTIN_EPOCHS = 16
BUILTIN_VIEWS = (1, 3)
BUILTIN_SYNTH = {"seed": 0}
BUILTIN_VERSION = 4  # bump when the generator's videos change


@dataclass(frozen=True)
class Variant:
    key: str  # the paper's row and the run folder's name
    label: str  # as the table prints it
    overrides: dict


def variants(study: str, betas=None) -> list[Variant]:
    """The rows of one study, in the paper's order."""
    if study == "pathways":
        return [Variant("slow", "Slow-only", {"pathway": "slow"}), Variant("fast", "Fast-only", {"pathway": "fast"}),
                Variant("slowfast", "SlowFast", {})]
    if study == "lateral":
        labels = {"none": "no lateral", "ttoc-sum": "TtoC, sum", "ttoc-concat": "TtoC, concat",
                  "t-sample": "T-sample", "t-conv": "T-conv"}
        return [Variant(k, v, {"lateral": k}) for k, v in labels.items()]
    if study == "fast-input":
        return [Variant("rgb", "RGB", {"fast_input": "rgb"}),
                # The paper's half-size row: beta 1/4, and laterals that give Slow the default widths.
                Variant("half", "RGB, half size, β=1/4",
                        {"fast_input": "half", "beta": Fraction(1, 4), "fusion_ratio": 1}),
                Variant("gray", "gray-scale", {"fast_input": "gray"}),
                Variant("timediff", "time difference", {"fast_input": "timediff"})]
    if study == "beta":
        return [Variant(str(b), f"β = {b}", {"beta": b}) for b in betas]
    raise AblationError(f"unknown study {study!r}; choose one of {', '.join(STUDIES)}")


def parse_betas(text: str) -> list[Fraction]:
    try:
        return [parse_fraction(b.strip()) for b in text.split(",") if b.strip()]
    except Exception:
        raise AblationError(f"--betas takes comma-separated fractions such as 1/4,1/8, got {text!r}") from None


def default_betas(base: ModelConfig) -> tuple[list[Fraction], list[Fraction]]:
    """The paper's betas that leave the Fast pathway of network `base` at least one channel, and
    those left out."""
    kept, dropped = [], []
    for b in map(Fraction, PAPER_BETAS):
        try:
            base.replace(beta=b)
            kept.append(b)
        except Exception:
            dropped.append(b)
    return kept, dropped


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sfcli"


def builtin_dataset(progress=None) -> Path:
    """The synthetic benchmark, written once into the cache folder (a half-written one is never
    used: it is written beside and renamed into place)."""
    root = cache_folder() / f"synth-v{BUILTIN_VERSION}"
    if (root / "val.csv").is_file():
        return root
    from sfcli.synth import write_dataset  # imports PyAV, which other commands need not wait for

    partial = root.with_name(f".{root.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_dataset(partial, progress=progress, workers=os.cpu_count() or 1, **BUILTIN_SYNTH)
    try:
        partial.rename(root)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
    return root


def run_study(study: str, out: Path, train_videos: VideoList, val_videos: VideoList, arch: str,
              train_cfg: TrainConfig, crop: int | None, views: tuple[int, int], model_overrides: dict, betas=None,
              reporter: Reporter | None = None, init: SharedInit | None = None) -> dict:
    """Train and test every variant of `study` in out/<variant>, then write results.json,
    results.csv and the top-1 vs GFLOPs plot in `out`. Returns {"study", "rows", "files"}.
    The variants change the network of preset `arch`, or with `init` that of its weights (which
    they start from), with `model_overrides` applied first."""
    out = Path(out)
    base = (init.config if init else build_config(arch)).replace(**model_overrides)
    rows = []
    todo = variants(study, betas)
    reporter = reporter or Reporter()
    frames = train_cfg.decoder
    if any(not (out / v.key / TEST_FILE).exists() for v in todo):  # decoded once for all variants
        with reporter:
            frames = cached_decoder(run_videos(train_videos, val_videos), train_cfg, reporter)
    for n, variant in enumerate(todo, 1):
        cfg = base.replace(**variant.overrides, num_classes=len(train_videos.classes))
        clip = clip_config(cfg, arch, crop, views)
        reporter.print(f"[{n}/{len(todo)}] {variant.label}")
        summary = train(out / variant.key, train_videos, cfg, clip, train_cfg, val_videos, arch, reporter,
                        finetune=init.for_run(out / variant.key, cfg) if init else None, frames=frames)
        paper = PAPER.get((study, variant.key), (None, None, None))
        rows.append({
            "variant": variant.label, "key": variant.key, "map": summary.test.map, "top1": summary.test.top1,
            "top5": summary.test.top5, "gflops": round(count_gflops(cfg, clip.test_crop), 3),
            "params": summary.params, "train_seconds": round(sum(h.seconds for h in summary.history), 1),
            "excluded": summary.test.excluded, "paper_top1": paper[0], "paper_top5": paper[1],
            "paper_gflops": paper[2], "run": str(out / variant.key), "config": cfg.to_dict(),
        })
    source = {"path": init.source.path, "sha256": init.source.sha256} if init else None
    result = {"study": study, "arch": arch, "init": source, "crop": clip.crop, "test_crop": clip.test_crop,
              "views": "{}x{}".format(*views), "epochs": train_cfg.epochs,
              "data": str(train_videos.source), "val_data": str(val_videos.source), "rows": rows}
    if is_main_process():
        result["files"] = write_results(out, result)
    return result


def write_results(out: Path, result: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "results.json", "csv": out / "results.csv", "plot": out / "top1_vs_gflops.png"}
    files["json"].write_text(json.dumps(result, indent=2) + "\n")
    columns = ("variant", "map", "top1", "top5", "gflops", "params", "train_seconds", "excluded", "paper_top1",
               "paper_top5", "paper_gflops")
    with open(files["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(result["rows"])
    plot(result, files["plot"])
    return {k: str(v) for k, v in files.items()}


def plot(result: dict, path: Path) -> None:
    """Top-1 (mAP for multi-label data) against GFLOPs per view: the paper's accuracy/cost
    picture, one point per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    metric = "map" if result["rows"][0]["map"] is not None else "top1"
    for row in result["rows"]:
        ax.scatter(row["gflops"], row[metric], s=40)
        ax.annotate(row["variant"], (row["gflops"], row[metric]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.set_xlabel(f"GFLOPs per {result['test_crop']}px view")
    ax.set_ylabel(f"{'mAP' if metric == 'map' else 'top-1'} % ({result['views']} views)")
    ax.set_title(f"sfcli ablate {result['study']}: {result['arch']}, {result['epochs']} epochs")
    ax.grid(alpha=0.3)
    ax.margins(0.15)  # room for the labels
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


__all__ = ["AblationError", "PAPER", "STUDIES", "Variant", "builtin_dataset", "default_betas", "parse_betas",
           "run_study", "variants"]

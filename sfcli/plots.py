"""Figures: the confusion heat map of a test, the curves of runs. matplotlib is imported only here,
on first use."""

from __future__ import annotations

import io
from pathlib import Path

from sfcli.files import write_atomic
from sfcli.metrics import ConfusedPair, Confusion
from sfcli.runlog import validation_score

INCH_PER_CLASS = 0.12  # a class name of 6 pt per row and column: readable at 400 classes


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path) -> Path:
    """Written whole or not at all, like every other file sfcli writes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    return write_atomic(Path(path), buffer.getvalue())


def plot_confusion(confusion: Confusion, pairs: tuple[ConfusedPair, ...], path) -> Path:
    """Each row as % of its class's videos, classes from the least to the most often right, with
    the most confused pairs listed beside the map."""
    plt = pyplot()
    order = confusion.order()
    counts = confusion.counts[order][:, order].float()
    shares = 100 * counts / counts.sum(1, keepdim=True).clamp(min=1)
    names = [confusion.classes[i] for i in order]
    side = max(5.0, len(names) * INCH_PER_CLASS)
    font = 8 if len(names) <= 40 else 6
    fig, (ax, text) = plt.subplots(1, 2, figsize=(side + 4.5, side + 1.5), dpi=100,
                                   gridspec_kw={"width_ratios": [side, 4.5]})
    image = ax.imshow(shares.numpy(), cmap="viridis", vmin=0, vmax=100, interpolation="nearest")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=font)
    ax.set_yticks(range(len(names)), names, fontsize=font)
    ax.set_xlabel("predicted (top-1)")
    ax.set_ylabel("true class (least often right first)")
    fig.colorbar(image, ax=ax, fraction=0.04, shrink=min(1.0, 6 / side), label="% of the true class's videos")
    lines = [f"{p.true} -> {p.predicted}: {p.videos} ({p.share:.0f}%)" for p in pairs] or ["no confusion"]
    text.axis("off")
    text.text(0, 1, "most confused (true -> predicted)\n\n" + "\n".join(lines), va="top", fontsize=9,
              family="monospace", transform=text.transAxes)
    fig.tight_layout()
    return save(fig, path)


def plot_runs(runs, path) -> Path:
    """Training loss (every logged step where the run has them, else per epoch) and validation
    top-1 (mAP for multi-label data) per epoch of one or several runs (RunSummary), one colour per
    run, on one figure."""
    plt = pyplot()
    fig, (loss_ax, val_ax) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for colour, run in enumerate(runs):
        style = {"color": f"C{colour % 10}", "label": Path(run.run).name or run.run}
        if run.steps:
            loss_ax.plot([s.epochs for s in run.steps], [s.loss for s in run.steps], **style)
        else:
            loss_ax.plot([h.epoch for h in run.history], [h.loss for h in run.history], marker="o", **style)
        validated = [h for h in run.history if validation_score(h) is not None]
        val_ax.plot([h.epoch for h in validated], [validation_score(h) for h in validated], marker="o", **style)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    val_ax.set(xlabel="epoch", ylabel="validation top-1 % (mAP % for multi-label runs)", title="validation")
    for ax in (loss_ax, val_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)

"""Figures: the confusion heat map of a test. matplotlib is imported only here, on first use."""

from __future__ import annotations

import io
from pathlib import Path

from sfcli.files import write_atomic
from sfcli.metrics import ConfusedPair, Confusion

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

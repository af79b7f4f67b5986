"""What a test's scores say: top-1/top-5, mean class accuracy, per-class precision, recall and F1,
the confusion matrix and its most confused pairs; mean average precision for multi-label data.
Pure torch on (videos, classes) scores; results are dataclasses."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import torch


def percent(value: float) -> float:
    return round(100 * float(value), 2)


@dataclass(frozen=True)
class ClassMetrics:
    """One class over the scored videos; a rate is None when nothing defines it (no video of the
    class for recall, no video predicted as the class for precision)."""

    name: str
    videos: int  # scored videos of the class
    top1: float | None  # % of the class's videos predicted as it: the recall
    precision: float | None  # % of the videos predicted as the class that are of it
    f1: float | None  # %, precision taken as 0 where it is undefined
    ap: float | None = None  # multi-label data: average precision, %

    def to_json(self) -> dict:
        return {"class": self.name, "videos": self.videos, "top1": self.top1, "precision": self.precision,
                "f1": self.f1, "ap": self.ap}


@dataclass(frozen=True)
class ConfusedPair:
    """Videos of class `true` whose top-1 was `predicted`."""

    true: str
    predicted: str
    videos: int
    share: float  # % of the true class's videos

    def to_json(self) -> dict:
        return {"true": self.true, "predicted": self.predicted, "videos": self.videos, "share": self.share}


@dataclass(frozen=True, eq=False)
class Confusion:
    """counts[i, j]: videos of class i whose top-1 prediction was class j. Each row sums to the
    class's videos and the diagonal's sum is the top-1 hits."""

    classes: tuple[str, ...]
    counts: torch.Tensor  # (classes, classes) int64

    def most_confused(self, k: int = 10) -> tuple[ConfusedPair, ...]:
        """The k largest off-diagonal cells, largest first (ties by class order)."""
        off = self.counts.clone()
        off.fill_diagonal_(0)
        flat = off.flatten()
        top = flat.topk(min(k, len(flat))).indices.tolist()
        order = sorted(top, key=lambda i: (-int(flat[i]), i))
        rows = self.counts.sum(1)
        n = len(self.classes)
        return tuple(ConfusedPair(self.classes[i // n], self.classes[i % n], int(flat[i]),
                                  percent(flat[i] / rows[i // n])) for i in order if flat[i] > 0)

    def order(self) -> list[int]:
        """Classes from the least to the most often right (then by name), so that a heat map
        groups the trouble in its top left corner."""
        rows = self.counts.sum(1).clamp(min=1)
        recall = self.counts.diagonal() / rows
        return sorted(range(len(self.classes)), key=lambda i: (float(recall[i]), self.classes[i]))

    def to_csv(self) -> str:
        """A header row of predicted classes, then one row per true class, in the classes' order."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["true \\ predicted", *self.classes])
        for name, row in zip(self.classes, self.counts.tolist()):
            writer.writerow([name, *row])
        return out.getvalue()


@dataclass(frozen=True)
class Accuracy:
    """The metrics of one set of scores (rates as %). Multi-label data: top-1/top-5 count a video
    whose top 1/5 classes hold one of its labels, and mAP is the headline."""

    top1: float
    top5: float
    mean_class_accuracy: float | None  # top-1 averaged over the classes that have videos (single-label)
    per_class: tuple[ClassMetrics, ...]
    most_confused: tuple[ConfusedPair, ...]
    map: float | None = None  # multi-label: mean average precision


def confusion_matrix(scores: torch.Tensor, labels: torch.Tensor, classes) -> Confusion:
    """Rows: the true labels (N,), columns: each video's top-1 of `scores` (N, classes)."""
    n = len(classes)
    predicted = scores.argmax(1) if len(labels) else torch.zeros(0, dtype=torch.long)
    counts = torch.bincount(labels * n + predicted, minlength=n * n).reshape(n, n)
    return Confusion(tuple(classes), counts)


def accuracy(scores: torch.Tensor, labels: torch.Tensor, classes, pairs: int = 10) -> Accuracy:
    """Everything a single-label test reports, from scores (N, classes) and labels (N,)."""
    confusion = confusion_matrix(scores, labels, classes)
    counts = confusion.counts
    hits, videos, predicted = counts.diagonal(), counts.sum(1), counts.sum(0)
    per_class = []
    for c, name in enumerate(classes):
        recall = float(hits[c] / videos[c]) if videos[c] else None
        precision = float(hits[c] / predicted[c]) if predicted[c] else None
        f1 = None
        if recall is not None:
            p = precision or 0.0
            f1 = percent(2 * p * recall / (p + recall)) if p + recall else 0.0
        per_class.append(ClassMetrics(name, int(videos[c]), None if recall is None else percent(recall),
                                      None if precision is None else percent(precision), f1))
    k = min(5, scores.shape[1])
    hit5 = (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1) if len(labels) else torch.zeros(0)
    recalls = [c.top1 for c in per_class if c.top1 is not None]
    return Accuracy(percent(hits.sum() / len(labels)) if len(labels) else 0.0,
                    percent(hit5.float().mean()) if len(labels) else 0.0,
                    round(sum(recalls) / len(recalls), 2) if recalls else 0.0, tuple(per_class),
                    confusion.most_confused(pairs))


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per class (classes,): the mean over its positive videos of the precision among the videos
    scored at least as high, ranked by `scores` (N, classes); nan for a class without positives."""
    order = scores.argsort(dim=0, descending=True, stable=True)
    ranked = targets.float().gather(0, order)
    hits = ranked.cumsum(0)
    precision = hits / torch.arange(1, len(scores) + 1, dtype=torch.float32)[:, None]
    positives = ranked.sum(0)
    return (precision * ranked).sum(0) / positives.where(positives > 0, torch.tensor(float("nan")))


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP as %: average precision averaged over the classes that have a positive video (the
    Charades protocol); 0 when none has."""
    ap = average_precision(scores, targets) if len(scores) else torch.zeros(0)
    ap = ap[~ap.isnan()]
    return percent(ap.mean()) if len(ap) else 0.0


def multi_label_accuracy(scores: torch.Tensor, targets: torch.Tensor, classes) -> Accuracy:
    """Everything a multi-label test reports, from scores (N, classes) and 0/1 targets (N, classes):
    mAP, average precision per class, and how often the top 1/5 classes hold a label."""
    k = min(5, scores.shape[1])
    top = scores.topk(k, dim=1).indices if len(scores) else torch.zeros(0, k, dtype=torch.long)
    hits = targets.gather(1, top).bool() if len(scores) else torch.zeros(0, k, dtype=torch.bool)
    ap = average_precision(scores, targets) if len(scores) else torch.full((len(classes),), float("nan"))
    positives = targets.sum(0).tolist() if len(scores) else [0] * len(classes)
    per_class = tuple(ClassMetrics(name, int(n), None, None, None, None if math.isnan(a) else percent(a))
                      for name, n, a in zip(classes, positives, ap.tolist()))
    rate = lambda hit: percent(hit.float().mean()) if len(scores) else 0.0  # noqa: E731
    return Accuracy(rate(hits[:, 0]), rate(hits.any(1)), None, per_class, (), mean_average_precision(scores, targets))

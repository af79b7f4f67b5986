"""Imbalanced classes: a loss weighted by inverse class frequency, or an epoch order that draws
classes uniformly. Both are functions of the training list (and the order of seed and epoch
too), so a resumed run, and every process under torchrun, sees what an uninterrupted one would."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from sfcli.errors import TrainingError
from sfcli.videolist import VideoList

BALANCES = ("none", "weights", "sampler")


@dataclass(frozen=True)
class ClassBalance:
    mode: str  # "weights" or "sampler"
    labels: tuple[int, ...]
    num_classes: int

    @cached_property
    def loss_weight(self) -> torch.Tensor | None:
        """Per-class weights N / (C * n_c) over the C classes present (1 for every class when
        they are balanced); None for the sampler, which balances the batches instead."""
        if self.mode != "weights":
            return None
        counts = torch.bincount(torch.tensor(self.labels), minlength=self.num_classes).double()
        present = int((counts > 0).sum())
        weights = torch.where(counts > 0, counts.sum() / (present * counts.clamp(min=1)), torch.zeros(()))
        return weights.float()

    def order(self, seed: int, epoch: int) -> list[int] | None:
        """The sampler's epoch: as many draws as videos, each a class chosen uniformly, then one of
        its videos uniformly (with replacement); None without the sampler."""
        if self.mode != "sampler":
            return None
        by_class = self._by_class
        g = torch.Generator().manual_seed(seed * 100_003 + epoch + 1_000_003)  # not epoch_order's stream
        n = len(self.labels)
        classes = torch.randint(len(by_class), (n,), generator=g).tolist()
        picks = torch.randint(2**31 - 1, (n,), generator=g).tolist()
        return [by_class[c][r % len(by_class[c])] for c, r in zip(classes, picks)]

    @cached_property
    def _by_class(self) -> list[list[int]]:
        """The videos of each class present, in list order."""
        videos: dict[int, list[int]] = {}
        for i, y in enumerate(self.labels):
            videos.setdefault(y, []).append(i)
        return [videos[c] for c in sorted(videos)]


def make_balance(mode: str, videos: VideoList) -> ClassBalance | None:
    """The balance `--class-balance mode` asks for on `videos`; None for "none"."""
    if mode not in BALANCES:
        raise TrainingError(f"class balance must be one of {', '.join(BALANCES)}, got {mode!r}")
    if mode == "none":
        return None
    if not all(isinstance(y, int) for y in videos.labels):  # a multi-label list: 0/1 per class
        raise TrainingError("--class-balance needs one class per video; a multi-label list has several")
    return ClassBalance(mode, tuple(int(y) for y in videos.labels), len(videos.classes))

"""The paper's multi-view test: every video's views scored, top-1/top-5 and per-class accuracy,
as an `EvalResult`; `sfcli eval` runs it on a checkpoint."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

import torch

from sfcli.console import Reporter
from sfcli.data import ClipConfig, VideoDataset, collate
from sfcli.devices import pick_device
from sfcli.distributed import gather, init_distributed, world
from sfcli.model import SlowFast
from sfcli.predict import load_predictor, view_probabilities
from sfcli.videolist import VideoList, read_video_list


@dataclass(frozen=True)
class BadVideo:
    """A video that could not be decoded, and why."""

    path: str
    reason: str

    def to_json(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class ClassAccuracy:
    name: str
    videos: int  # scored videos of the class
    top1: float | None  # %, None when no video of the class was scored

    def to_json(self) -> dict:
        return {"class": self.name, "videos": self.videos, "top1": self.top1}


@dataclass(frozen=True)
class EvalResult:
    """One test: accuracy (as %) over the scored videos, and the videos excluded from it."""

    top1: float
    top5: float
    scored: int
    per_class: tuple[ClassAccuracy, ...]
    views: tuple[int, int]  # (clips, crops) per video
    videos: int  # listed, scored or not
    excluded_videos: tuple[BadVideo, ...]
    seconds: float

    @property
    def excluded(self) -> int:
        return len(self.excluded_videos)

    def to_json(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "scored": self.scored,
                "per_class": [c.to_json() for c in self.per_class], "views": f"{self.views[0]}x{self.views[1]}",
                "videos": self.videos, "excluded": self.excluded,
                "excluded_videos": [b.to_json() for b in self.excluded_videos], "seconds": self.seconds}

    @classmethod
    def from_json(cls, d: dict) -> EvalResult:
        clips, crops = d["views"].split("x")
        return cls(d["top1"], d["top5"], d["scored"],
                   tuple(ClassAccuracy(c["class"], c["videos"], c["top1"]) for c in d["per_class"]),
                   (int(clips), int(crops)), d["videos"], tuple(BadVideo(**b) for b in d["excluded_videos"]),
                   d["seconds"])


@dataclass(frozen=True)
class CheckpointEval:
    """`sfcli eval`'s result: which checkpoint was tested on which data, and the test."""

    checkpoint: str
    arch: str
    data: str
    test: EvalResult

    def to_json(self) -> dict:
        return {"checkpoint": self.checkpoint, "arch": self.arch, "data": self.data, **self.test.to_json()}


def ignore_interrupts(_worker_id: int) -> None:
    """A loader's worker_init_fn: Ctrl-C reaches the workers too, and only the main process
    decides how to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def evaluate(model: SlowFast, videos: VideoList, clip: ClipConfig, device: torch.device, batch_size: int = 4,
             workers: int = 2, amp: bool = False, decoder: str = "auto", reporter: Reporter | None = None,
             description: str = "eval") -> EvalResult:
    """The paper's test: every video's views (clip.num_clips uniform clips x clip.num_crops crops)
    through the network, softmax scores summed per video, top-1/top-5 and per-class accuracy.
    Videos that fail to decode are excluded and listed. Under torchrun each process scores every
    world-th video and the results are gathered: every video counted exactly once."""
    rank, world_size = world()
    model.eval()
    dataset = VideoDataset(videos, clip, train=False, decoder=decoder)
    mine = list(range(rank, len(dataset), world_size))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=mine, num_workers=workers,
                                         collate_fn=collate, worker_init_fn=ignore_interrupts)
    scores, labels, failures = [], [], []
    reporter = reporter or Reporter(enabled=False)
    task, began, seen = reporter.task(description, len(dataset)), time.perf_counter(), 0
    for batch in loader:
        failures += batch["failures"]
        if batch["clip"] is not None:
            b, v = batch["clip"].shape[:2]
            probs = view_probabilities(model, batch["clip"].flatten(0, 1), clip, device, amp)
            scores.append(probs.reshape(b, v, -1).sum(1))
            labels.append(batch["label"])
        seen += len(batch["index"]) + len(batch["failures"])
        elapsed = time.perf_counter() - began
        reporter.update(task, min(seen * world_size, len(dataset)), seen * clip.views * world_size / max(elapsed, 1e-9))
    reporter.done(task)
    local = (torch.cat(scores) if scores else torch.zeros(0, model.cfg.num_classes),
             torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long), failures)
    parts = gather(local)
    labels = torch.cat([p[1] for p in parts])
    top1, top5, per_class = accuracy(torch.cat([p[0] for p in parts]), labels, videos.classes)
    failures = sorted((i, reason) for p in parts for i, reason in p[2])
    return EvalResult(top1, top5, len(labels), per_class, (clip.num_clips, clip.num_crops), len(dataset),
                      tuple(BadVideo(str(videos.paths[i]), reason) for i, reason in failures),
                      round(time.perf_counter() - began, 2))


def evaluate_checkpoint(checkpoint, data, views: tuple[int, int] = (10, 3), batch_size: int = 4, workers: int = 2,
                        device: str = "auto", decoder: str = "auto", prefix=None, labels=None,
                        skip_missing: bool = False, arch: str | None = None,
                        reporter: Reporter | None = None) -> CheckpointEval:
    """`sfcli eval`: a checkpoint tested on a dataset with the paper's multi-view protocol."""
    init_distributed(pick_device(device))
    predictor = load_predictor(checkpoint, arch, labels, views, device)
    videos = read_video_list(data, prefix, classes=predictor.classes, skip_missing=skip_missing)
    reporter = reporter or Reporter()
    with reporter:
        result = evaluate(predictor.model, videos, predictor.clip, predictor.device, batch_size, workers,
                          decoder=decoder, reporter=reporter)
    return CheckpointEval(predictor.info.path, predictor.info.arch, str(data), result)


def accuracy(scores: torch.Tensor, labels: torch.Tensor,
             classes: list[str]) -> tuple[float, float, tuple[ClassAccuracy, ...]]:
    """Top-1 and top-5 (as %) over the scored videos, and top-1 per class."""
    n = len(labels)
    k = min(5, scores.shape[1])
    top = scores.topk(k, dim=1).indices if n else torch.zeros(0, k, dtype=torch.long)
    hit1 = top[:, 0] == labels
    hit5 = (top == labels[:, None]).any(dim=1)
    pct = lambda hits: round(100 * float(hits.float().mean()), 2)  # noqa: E731
    per_class = []
    for c, name in enumerate(classes):
        mask = labels == c
        count = int(mask.sum())
        per_class.append(ClassAccuracy(name, count, pct(hit1[mask]) if count else None))
    return (pct(hit1) if n else 0.0), (pct(hit5) if n else 0.0), tuple(per_class)

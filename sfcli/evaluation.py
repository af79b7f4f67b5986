"""The paper's multi-view test: every video's views scored (`VideoScores`), and what the scores
say as an `EvalResult`; score files (`--save-scores`) written, read back and averaged; `sfcli
eval` runs it on a checkpoint and writes eval.json and the confusion matrix with `--out`."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sfcli.console import Reporter
from sfcli.data import ClipConfig, VideoDataset, collate
from sfcli.devices import pick_device
from sfcli.distributed import gather, init_distributed, world
from sfcli.errors import DataError
from sfcli.files import write_atomic
from sfcli.metrics import ClassMetrics, ConfusedPair, accuracy, confusion_matrix, multi_label_accuracy
from sfcli.model import SlowFast
from sfcli.predict import load_predictor, view_probabilities
from sfcli.videolist import VideoList, read_video_list

EVAL_FILE, CONFUSION_CSV, CONFUSION_PNG = "eval.json", "confusion.csv", "confusion.png"


@dataclass(frozen=True)
class BadVideo:
    """A video that could not be decoded: why, for people, and the decoders' own messages."""

    path: str
    reason: str
    details: str = ""

    @classmethod
    def of(cls, path, reason: str) -> BadVideo:
        """From a failure's reason (a sfcli.errors.Reason carries the decoders' messages)."""
        return cls(str(path), str(reason), getattr(reason, "details", ""))

    def to_json(self) -> dict:
        return {"path": self.path, "reason": self.reason, "details": self.details}


@dataclass(frozen=True, eq=False)
class VideoScores:
    """Every scored video's class scores (its views' probabilities averaged: softmax, or each
    class's sigmoid for multi-label data), in list order."""

    classes: tuple[str, ...]
    paths: tuple[str, ...]
    labels: torch.Tensor  # (videos,) class indices, or (videos, classes) 0/1 for multi-label data
    scores: torch.Tensor  # (videos, classes) float32
    views: str  # "CLIPSxCROPS", or several joined by "+" once combined
    excluded_videos: tuple[BadVideo, ...] = ()
    # Videos scored from repeated frames: shorter than a clip's span, or fewer frames than their container says.
    warnings: tuple[str, ...] = ()

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    def label_names(self, label: int | list[int]) -> str | list[str]:
        if self.multi_label:
            return [name for name, on in zip(self.classes, label) if on]
        return self.classes[label]

    def to_json(self) -> dict:
        return {"classes": list(self.classes), "views": self.views,
                "excluded_videos": [b.to_json() for b in self.excluded_videos],
                "videos": [{"path": p, "label": self.label_names(y), "scores": [round(s, 6) for s in row]}
                           for p, y, row in zip(self.paths, self.labels.tolist(), self.scores.tolist())]}


@dataclass(frozen=True)
class EvalResult:
    """One test: accuracy (as %) over the scored videos, and the videos excluded from it."""

    top1: float  # multi-label data: videos whose top class is one of theirs
    top5: float
    mean_class_accuracy: float | None  # None for multi-label data
    scored: int
    per_class: tuple[ClassMetrics, ...]
    most_confused: tuple[ConfusedPair, ...]
    views: str  # "CLIPSxCROPS" per video
    videos: int  # listed, scored or not
    excluded_videos: tuple[BadVideo, ...]
    seconds: float
    map: float | None = None  # multi-label data: mean average precision, the headline

    @property
    def excluded(self) -> int:
        return len(self.excluded_videos)

    def to_json(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "mean_class_accuracy": self.mean_class_accuracy,
                "scored": self.scored, "per_class": [c.to_json() for c in self.per_class],
                "most_confused": [p.to_json() for p in self.most_confused], "views": self.views,
                "videos": self.videos, "excluded": self.excluded,
                "excluded_videos": [b.to_json() for b in self.excluded_videos], "seconds": self.seconds,
                "map": self.map}

    @classmethod
    def from_json(cls, d: dict) -> EvalResult:
        per_class = tuple(ClassMetrics(c["class"], c["videos"], c["top1"], c["precision"], c["f1"], c["ap"])
                          for c in d["per_class"])
        return cls(d["top1"], d["top5"], d["mean_class_accuracy"], d["scored"], per_class,
                   tuple(ConfusedPair(**p) for p in d["most_confused"]), d["views"], d["videos"],
                   tuple(BadVideo(**b) for b in d["excluded_videos"]), d["seconds"], d["map"])


@dataclass(frozen=True)
class CheckpointEval:
    """`sfcli eval`'s result: which checkpoint (or score files) was tested on which data, the
    test, and the scores it came from."""

    checkpoint: str
    arch: str
    data: str
    test: EvalResult
    scores: VideoScores
    warnings: tuple[str, ...] = ()  # the list's (VideoList.warnings), then the videos' (VideoScores.warnings)

    def to_json(self) -> dict:
        return {"checkpoint": self.checkpoint, "arch": self.arch, "data": self.data, **self.test.to_json(),
                "warnings": list(self.warnings)}


def ignore_interrupts(_worker_id: int) -> None:
    """A loader's worker_init_fn: Ctrl-C reaches the workers too, and only the main process
    decides how to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def score_videos(model: SlowFast, videos: VideoList, clip: ClipConfig, device: torch.device, batch_size: int = 4,
                 workers: int = 2, amp: bool = False, decoder: str = "auto", reporter: Reporter | None = None,
                 description: str = "eval") -> VideoScores:
    """Every video's views (clip.num_clips uniform clips x clip.num_crops crops) through the
    network, probabilities averaged per video. Videos that fail to decode are excluded and
    listed, and videos scored from repeated frames named in `warnings`. Under torchrun each process
    scores every world-th video and the scores are gathered: every video counted exactly once."""
    rank, world_size = world()
    model.eval()
    dataset = VideoDataset(videos, clip, train=False, decoder=decoder)
    mine = list(range(rank, len(dataset), world_size))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=mine, num_workers=workers,
                                         collate_fn=collate, worker_init_fn=ignore_interrupts)
    scores, indices, failures, notes = [], [], [], []
    reporter = reporter or Reporter(enabled=False)
    task, began, seen = reporter.task(description, len(dataset)), time.perf_counter(), 0
    for batch in loader:
        failures += batch["failures"]
        notes += batch["notes"]
        if batch["clip"] is not None:
            b, v = batch["clip"].shape[:2]
            probs = view_probabilities(model, batch["clip"].flatten(0, 1), clip, device, amp,
                                       multi_label=videos.multi_label)
            scores.append(probs.reshape(b, v, -1).mean(1))
            indices.append(batch["index"])
        seen += len(batch["index"]) + len(batch["failures"])
        elapsed = time.perf_counter() - began
        reporter.update(task, min(seen * world_size, len(dataset)), seen * clip.views * world_size / max(elapsed, 1e-9))
    reporter.done(task)
    local = (torch.cat(scores) if scores else torch.zeros(0, model.cfg.num_classes),
             torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long), failures, notes)
    parts = gather(local)
    index = torch.cat([p[1] for p in parts])
    order = index.argsort()
    index = index[order]
    failures = sorted((i, reason) for p in parts for i, reason in p[2])
    notes = sorted(note for p in parts for note in p[3])
    return VideoScores(tuple(videos.classes), tuple(str(videos.paths[i]) for i in index.tolist()),
                       torch.tensor(videos.labels, dtype=torch.long)[index], torch.cat([p[0] for p in parts])[order],
                       f"{clip.num_clips}x{clip.num_crops}",
                       tuple(BadVideo.of(videos.paths[i], reason) for i, reason in failures),
                       tuple(f"{videos.paths[i]}: {note}" for i, note in notes))


def summarize(scores: VideoScores, seconds: float = 0.0) -> EvalResult:
    """What the scores say: top-1/top-5, mean class accuracy, per class, the most confused pairs;
    for multi-label data mAP and average precision per class."""
    measure = multi_label_accuracy if scores.multi_label else accuracy
    acc = measure(scores.scores, scores.labels, scores.classes)
    return EvalResult(acc.top1, acc.top5, acc.mean_class_accuracy, len(scores.labels), acc.per_class,
                      acc.most_confused, scores.views, len(scores.labels) + len(scores.excluded_videos),
                      scores.excluded_videos, seconds, acc.map)


def evaluate(model: SlowFast, videos: VideoList, clip: ClipConfig, device: torch.device, batch_size: int = 4,
             workers: int = 2, amp: bool = False, decoder: str = "auto", reporter: Reporter | None = None,
             description: str = "eval") -> EvalResult:
    """The paper's test (see `score_videos`), summarized; the reporter says which videos were
    scored from repeated frames (once each: see Reporter.warn)."""
    began = time.perf_counter()
    scores = score_videos(model, videos, clip, device, batch_size, workers, amp, decoder, reporter, description)
    if reporter is not None:
        reporter.warn(scores.warnings)
    return summarize(scores, round(time.perf_counter() - began, 2))


def evaluate_checkpoint(checkpoint, data, views: tuple[int, int] = (10, 3), batch_size: int = 4, workers: int = 2,
                        device: str = "auto", decoder: str = "auto", prefix=None, labels=None,
                        skip_missing: bool = False, arch: str | None = None,
                        reporter: Reporter | None = None, head_pool: str = "reference") -> CheckpointEval:
    """`sfcli eval`: a checkpoint tested on a dataset with the paper's multi-view protocol
    (`head_pool`: see load_predictor)."""
    init_distributed(pick_device(device))
    predictor = load_predictor(checkpoint, arch, labels, views, device, head_pool)
    videos = read_video_list(data, prefix, classes=predictor.classes, skip_missing=skip_missing)
    reporter = reporter or Reporter()
    began = time.perf_counter()
    with reporter:
        scores = score_videos(predictor.model, videos, predictor.clip, predictor.device, batch_size, workers,
                              decoder=decoder, reporter=reporter)
    return CheckpointEval(predictor.info.path, predictor.info.arch, str(data),
                          summarize(scores, round(time.perf_counter() - began, 2)), scores,
                          videos.warnings + scores.warnings)


def read_scores(path) -> VideoScores:
    """A file written by `sfcli eval --save-scores`."""
    try:
        d = json.loads(Path(path).read_text())
        classes = tuple(d["classes"])
        lookup = {name: i for i, name in enumerate(classes)}
        videos = d["videos"]
        scores = torch.tensor([v["scores"] for v in videos], dtype=torch.float32).reshape(len(videos), len(classes))
        multi_label = bool(videos) and isinstance(videos[0]["label"], list)
        labels = [[int(name in v["label"]) for name in classes] if multi_label else lookup[v["label"]]
                  for v in videos]
        return VideoScores(classes, tuple(v["path"] for v in videos), torch.tensor(labels, dtype=torch.long), scores,
                           d["views"], tuple(BadVideo(**b) for b in d["excluded_videos"]))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise DataError(f"{path} is not a score file written by sfcli eval --save-scores ({err})") from None


def combine_scores(files) -> CheckpointEval:
    """`sfcli eval --scores A.json B.json`: the files' scores averaged per video (an ensemble),
    over the videos that every file scored; the others are listed as excluded."""
    parts = [read_scores(f) for f in files]
    first = parts[0]
    for f, part in zip(files[1:], parts[1:]):
        if part.classes != first.classes:
            raise DataError(f"{f} scores other classes than {files[0]}; only scores of the same classes combine")
    common = set.intersection(*(set(p.paths) for p in parts))
    keep = [i for i, p in enumerate(first.paths) if p in common]
    paths = tuple(first.paths[i] for i in keep)
    total = torch.zeros(len(paths), len(first.classes))
    for f, part in zip(files, parts):
        rows = [{p: i for i, p in enumerate(part.paths)}[p] for p in paths]
        if not torch.equal(part.labels[rows], first.labels[keep]):
            raise DataError(f"{f} and {files[0]} give some videos different labels")
        total += part.scores[rows]
    excluded = {b.path: b for p in parts for b in p.excluded_videos}
    for f, part in zip(files, parts):
        for p in part.paths:
            if p not in common:
                excluded.setdefault(p, BadVideo(p, f"not scored in every file (it is in {f})"))
    scores = VideoScores(first.classes, paths, first.labels[keep], total / len(parts),
                         "+".join(p.views for p in parts), tuple(excluded.values()))
    return CheckpointEval(" + ".join(map(str, files)), "ensemble", "saved scores", summarize(scores), scores)


def write_scores(path, scores: VideoScores) -> Path:
    return write_atomic(Path(path), json.dumps(scores.to_json()) + "\n")


def write_report(out, result: CheckpointEval) -> list[Path]:
    """`--out DIR`: eval.json, and for single-label data confusion.csv and the confusion heat map
    confusion.png (a multi-label video has no one true class to put in a row)."""
    from sfcli.plots import plot_confusion  # matplotlib only when a figure is asked for

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_atomic(out / EVAL_FILE, json.dumps(result.to_json(), indent=2) + "\n")]
    if not result.scores.multi_label:
        confusion = confusion_matrix(result.scores.scores, result.scores.labels, result.scores.classes)
        files.append(write_atomic(out / CONFUSION_CSV, confusion.to_csv()))
        files.append(plot_confusion(confusion, result.test.most_confused, out / CONFUSION_PNG))
    return files

"""`sfcli infer`: what happens in a video, with any checkpoint users have.

A video's score is the paper's test: its views (N uniform clips x M crops, decoded once) through
the network, softmax averaged. With a window, the same is done for each window of S seconds
every stride seconds, decoding only that window's frames; a window that does not decode is named,
and the video scored from the others.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from sfcli.data import test_views
from sfcli.decode import file_problem, probe
from sfcli.errors import VideoError
from sfcli.evaluation import BadVideo
from sfcli.predict import Predictor, view_probabilities
from sfcli.videolist import VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Label:
    label: str
    score: float


@dataclass(frozen=True)
class Window:
    """One window of a video, in seconds, and its top labels; or, with `error`, why its frames
    could not be decoded (and the decoders' own messages)."""

    start: float
    end: float
    predictions: tuple[Label, ...]
    error: str | None = None
    details: str = ""

    def to_json(self) -> dict:
        out = {"start": self.start, "end": self.end, "predictions": [dataclasses.asdict(p) for p in self.predictions]}
        return out if self.error is None else out | {"error": self.error, "details": self.details}


@dataclass(frozen=True)
class VideoPrediction:
    """A video's top labels, and those of each window when windows were asked for."""

    video: str
    seconds: float
    fps: float
    predictions: tuple[Label, ...]
    windows: tuple[Window, ...] = ()
    # A video shorter than a clip's span, windows not decoded: printed with the table, kept in the JSON.
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"video": self.video, "seconds": self.seconds, "fps": self.fps,
                "predictions": [dataclasses.asdict(p) for p in self.predictions],
                "windows": [w.to_json() for w in self.windows], "warnings": list(self.warnings)}


def top_labels(probabilities: torch.Tensor, classes: list[str], k: int) -> tuple[Label, ...]:
    scores, indices = probabilities.topk(min(k, len(classes)))
    return tuple(Label(classes[i], round(float(s), 4)) for s, i in zip(scores, indices))


def window_bounds(seconds: float, window: float, stride: float) -> list[tuple[float, float]]:
    """(start, end) in seconds of every `window` seconds every `stride` seconds of a video."""
    # Rounded so that a float step such as 0.1 does not add a spurious sliver of a last window.
    count = 1 + math.ceil(round(max(seconds - window, 0) / stride, 6))
    return [(i * stride, min(i * stride + window, seconds)) for i in range(count)]


def infer_video(predictor: Predictor, path, top_k: int = 5, window: float | None = None,
                stride: float | None = None, decoder: str = "auto", on_window=None) -> VideoPrediction:
    """The top-k labels of a video from the predictor's views, and of every `window` seconds
    every `stride` seconds when a window is given, calling `on_window(done, total)` after each;
    the video's labels then come from the windows that decoded. Raises VideoError for a video
    that cannot be read, or none of whose windows decode."""
    p = predictor
    num_frames, fps = probe(path, decoder)
    seconds = num_frames / fps
    short = p.clip.short_video(num_frames, fps)
    notes = [short] if short else []  # and the decoder's: each window may repeat them

    def predict(span=None):
        views = test_views(path, p.clip, decoder, span, notes)[0]
        return view_probabilities(p.model, views, p.clip, p.device).mean(0)

    def warnings():
        return tuple(f"{path}: {note}" for note in dict.fromkeys(notes))

    video = {"video": str(path), "seconds": round(seconds, 3), "fps": round(fps, 3)}
    if window is None:
        predictions = top_labels(predict(), p.classes, top_k)
        return VideoPrediction(**video, predictions=predictions, warnings=warnings())
    total, windows = torch.zeros(len(p.classes)), []
    bounds = window_bounds(seconds, window, stride or window)
    for start, end in bounds:
        try:
            probabilities = predict((start, end))
        except VideoError as err:
            windows.append(Window(round(start, 3), round(end, 3), (), str(err), err.details))
        else:
            total += probabilities * (end - start)
            windows.append(Window(round(start, 3), round(end, 3), top_labels(probabilities, p.classes, top_k)))
        if on_window:
            on_window(len(windows), len(bounds))
    failed = [w for w in windows if w.error]
    if len(failed) == len(windows):
        raise VideoError(failed[0].error, failed[0].details)
    if failed:
        spans = ", ".join(f"{w.start:.1f}-{w.end:.1f} s" for w in failed[:3]) + (", ..." if len(failed) > 3 else "")
        notes.append(f"{len(failed)} of {len(windows)} windows cannot be decoded ({spans}: {failed[0].error}); "
                     f"the video's labels are those of the other {len(windows) - len(failed)}")
    # The whole video: the decoded windows weighted by the time they cover.
    return VideoPrediction(**video, predictions=top_labels(total / total.sum(), p.classes, top_k),
                           windows=tuple(windows), warnings=warnings())


def video_paths(inputs) -> list[Path]:
    """Files as given, and the videos inside folders (recursively, sorted). Missing paths, and
    folders with no videos, are kept, so that they are reported with the rest."""
    out = []
    for item in map(Path, inputs):
        found = []
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        out += found or [item]
    return out


def infer_many(predictor: Predictor, inputs, top_k: int = 5, window=None, stride=None, decoder: str = "auto",
               on_window=None):
    """Yield (path, result, None) or (path, None, BadVideo) for every video: one that cannot be
    read does not stop the others. A BadVideo has the decoders' messages as details where they
    ran, none where the file was refused before (missing, empty, a FIFO...). `on_window` as for
    infer_video."""
    for path in video_paths(inputs):
        problem = file_problem(path)
        if problem:
            yield path, None, BadVideo(str(path), problem)
            continue
        try:
            yield path, infer_video(predictor, path, top_k, window, stride, decoder, on_window), None
        except VideoError as err:
            yield path, None, BadVideo.of(path, err.reason)

"""`sfcli infer`: what happens in a video, with any checkpoint users have.

A video's score is the paper's test: its views (N uniform clips x M crops, decoded once) through
the network, softmax averaged. With a window, the same is done for each window of S seconds
every stride seconds, decoding only that window's frames.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from sfcli.data import test_views
from sfcli.decode import probe
from sfcli.errors import VideoError
from sfcli.predict import Predictor, view_probabilities
from sfcli.videolist import VIDEO_EXTENSIONS


def top_labels(probabilities: torch.Tensor, classes: list[str], k: int) -> list[dict]:
    scores, indices = probabilities.topk(min(k, len(classes)))
    return [{"label": classes[i], "score": round(float(s), 4)} for s, i in zip(scores, indices)]


def infer_video(predictor: Predictor, path, top_k: int = 5, window: float | None = None,
                stride: float | None = None, decoder: str = "auto") -> dict:
    """{video, seconds, fps, predictions: [{label, score}], windows: [{start, end, predictions}]}.
    Raises VideoError for a video that cannot be read."""
    p = predictor
    num_frames, fps = probe(path, decoder)
    seconds = num_frames / fps

    def predict(span=None):
        views = test_views(path, p.clip, decoder, span)[0]
        return view_probabilities(p.model, views, p.clip, p.device).mean(0)

    result = {"video": str(path), "seconds": round(seconds, 3), "fps": round(fps, 3), "windows": []}
    if window is None:
        result["predictions"] = top_labels(predict(), p.classes, top_k)
        return result
    step = stride or window
    total = torch.zeros(len(p.classes))
    # Rounded so that a float step such as 0.1 does not add a spurious sliver of a last window.
    for i in range(1 + math.ceil(round(max(seconds - window, 0) / step, 6))):
        start = i * step
        end = min(start + window, seconds)
        probabilities = predict((start, end))
        total += probabilities * (end - start)
        result["windows"].append({"start": round(start, 3), "end": round(end, 3),
                                  "predictions": top_labels(probabilities, p.classes, top_k)})
    # The whole video: windows weighted by the time they cover.
    result["predictions"] = top_labels(total / total.sum(), p.classes, top_k)
    return result


def video_paths(inputs) -> list[Path]:
    """Files as given, and the videos inside folders (recursively, sorted). Missing paths are
    kept, so that they are reported with the rest."""
    out = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        else:
            out.append(item)
    return out


def infer_many(predictor: Predictor, inputs, top_k: int = 5, window=None, stride=None, decoder: str = "auto"):
    """Yield (path, result, None) or (path, None, reason) for every video: one that cannot be
    read does not stop the others."""
    for path in video_paths(inputs):
        if not path.exists():
            yield path, None, "no such file"
            continue
        if path.stat().st_size == 0:
            yield path, None, "empty file (0 bytes)"
            continue
        try:
            yield path, infer_video(predictor, path, top_k, window, stride, decoder), None
        except VideoError as err:
            yield path, None, f"cannot be decoded ({err})"

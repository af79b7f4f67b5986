"""Scoring views with a trained network: a checkpoint loaded as a `Predictor` (its inference
network, class names and view settings), and the softmax scores of a batch of views."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from sfcli.checkpoint import CheckpointInfo, load_model
from sfcli.data import ClipConfig
from sfcli.devices import autocast, pick_device
from sfcli.errors import DataError
from sfcli.fused import fuse_bn
from sfcli.model import SlowFast
from sfcli.model_config import ModelConfig
from sfcli.presets import clip_config
from sfcli.transforms import normalize
from sfcli.videolist import read_labels_file


@dataclass
class Predictor:
    """A checkpoint ready to score videos: its inference network, class names, view settings."""

    model: SlowFast
    classes: list[str]
    clip: ClipConfig
    device: torch.device
    info: CheckpointInfo


HEAD_POOLS = ("reference", "global")


def load_predictor(checkpoint, arch: str | None = None, labels=None, views: tuple[int, int] = (10, 3),
                   device: str = "auto", head_pool: str = "reference") -> Predictor:
    """Any checkpoint format (a run folder, an sfcli file, PySlowFast or PyTorchVideo weights);
    class names from `labels`, else the checkpoint's, else Kinetics-400's for 400 outputs; the
    run's own view settings (the preset's for foreign weights) with `views` = (clips, crops).
    `head_pool` "reference" scores views larger than the training crop with the reference's
    fully convolutional head (SlowFast.windowed_head); "global" pools the whole res5 map."""
    dev = pick_device(device)
    model, info = load_model(checkpoint, arch)
    classes = info.classes
    if labels is not None:
        classes = read_labels_file(labels)
        if len(classes) != model.cfg.num_classes:
            raise DataError(f"{labels} names {len(classes)} classes but the network has "
                            f"{model.cfg.num_classes} outputs")
    num_clips, num_crops = views
    clip = ClipConfig(**info.clip) if info.clip else clip_config(info.config, info.arch)
    clip = dataclasses.replace(clip, num_clips=num_clips, num_crops=num_crops)
    # The inference copy: BN folded into the convs, conv + ReLU (+ residual add) in one call.
    inference = fuse_bn(model.to(dev))
    if head_pool == "reference":
        inference.head_window = reference_head_window(model.cfg, clip)
    return Predictor(inference, classes, clip, dev, info)


def reference_head_window(model_cfg: ModelConfig, clip: ClipConfig) -> int | None:
    """The window of the reference's fully convolutional test head (res5 cells of a training
    crop) for views larger than the training crop; None where the global pool is the same."""
    if clip.test_crop > clip.crop and model_cfg.fast_input != "half":
        return clip.crop // 32
    return None


def view_chunk(device: torch.device, views: int) -> int:
    """Views per forward pass, split into equal passes so that the network meets one batch shape
    (oneDNN and cuDNN set up kernels per shape): at most 6 on the CPU (passes of 2 to 6 views ran
    within 4% of each other at 256², 8 slower; measured), up to 32 on a GPU."""
    passes = math.ceil(views / (32 if device.type == "cuda" else 6))
    return math.ceil(views / passes)


@torch.inference_mode()
def view_probabilities(model, views: torch.Tensor, clip: ClipConfig, device: torch.device, amp: bool = False,
                       chunk: int | None = None, multi_label: bool = False) -> torch.Tensor:
    """Softmax scores (N, classes), float32 on the CPU, of N uint8 views (N, C, T, H, W) cut as
    `clip` says, normalised as it says and run through the network `chunk` views at a time;
    `multi_label`: each class's sigmoid instead."""
    distinct, inverse = distinct_views(views)
    chunk = chunk or view_chunk(device, len(distinct))
    model.head_multi_label = multi_label  # a windowed head averages sigmoids, not softmaxes
    out = []
    for part in distinct.split(chunk):
        with autocast(device, amp):
            logits = model(normalize(part.to(device, non_blocking=True), clip.mean, clip.std))
        out.append((logits.float().sigmoid() if multi_label else logits.float().softmax(dim=1)).cpu())
    return torch.cat(out)[inverse]


def distinct_views(views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The views that differ (uint8, on the CPU), and for each view the index of its twin among
    them. A video shorter than the clip span gives every temporal clip the same frames; such views
    score the same, so each runs through the network once."""
    if views.device.type != "cpu" or views.dtype != torch.uint8:
        return views, torch.arange(len(views))
    first: dict[bytes, int] = {}
    keep, inverse = [], []
    for i, view in enumerate(views):
        j = first.setdefault(view.numpy().tobytes(), len(first))
        if j == len(keep):
            keep.append(i)
        inverse.append(j)
    return (views if len(keep) == len(views) else views[keep]), torch.tensor(inverse)

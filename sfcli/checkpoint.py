"""Checkpoints as users hand them to sfcli: any layout read into a network and its class names,
and sfcli's own format written.

sfcli's format is a dict::

    {"format": "sfcli", "version": 1, "arch": str, "model_config": ModelConfig.to_dict(),
     "classes": [str, ...], "model": state_dict, ...}

to which training code may add its own keys (optimizer state, step, epoch, RNG states as tensors
or ints: files are read with ``weights_only=True``, which refuses anything that carries code,
numpy arrays included). Foreign layouts (PySlowFast ``.pyth`` and Caffe2 ``.pkl``, PyTorchVideo
state dicts) are read through the table in `sfcli.layouts`; their network is inferred by `sfcli.weights_config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from sfcli import hub
from sfcli.caffe2 import fit_caffe2_shapes, is_caffe2, load_caffe2
from sfcli.cost import count_params
from sfcli.data import ClipConfig
from sfcli.errors import CheckpointError, ConfigError
from sfcli.files import load_checkpoint, save_checkpoint
from sfcli.layouts import translate, unwrap
from sfcli.model import SlowFast
from sfcli.model_config import LIMITS, ModelConfig
from sfcli.presets import PRESETS
from sfcli.weights_config import infer_config, infer_fields, pyslowfast_cfg_hints

FORMAT = "sfcli"
VERSION = 1


# ----------------------------------------------------------------------------- loading weights


def load_weights(model: torch.nn.Module, state_dict: Mapping, source: str | None = None) -> None:
    """model.load_state_dict(state_dict) with strict checking, but a mismatch is a CheckpointError
    of one sentence plus lists of missing keys, unexpected keys and shape mismatches. BN
    `num_batches_tracked` counters absent from old checkpoints are filled with zeros."""
    own = model.state_dict()
    state = dict(state_dict)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(v)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = []
    for k, v in state.items():
        if k in own:
            if not isinstance(v, torch.Tensor):
                mismatched.append(f"{k}: checkpoint holds a {type(v).__name__}, not a tensor")
            elif v.shape != own[k].shape:
                mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}")
    if missing or unexpected or mismatched:
        parts = [f"{len(items)} {name}" for items, name in (
            (mismatched, "shape mismatch" + "es" * (len(mismatched) != 1)),
            (missing, "missing key" + "s" * (len(missing) != 1)),
            (unexpected, "unexpected key" + "s" * (len(unexpected) != 1))) if items]
        lines = [f"the weights{f' in {source}' if source else ''} do not fit the model: {', '.join(parts)}."]
        for items, name in ((mismatched, "shape mismatches"), (missing, "missing keys"),
                            (unexpected, "unexpected keys")):
            if items:
                lines.append(f"  {name} ({len(items)}): {_head(items)}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=True)


def _head(items, n: int = 6) -> str:
    shown = "; ".join(items[:n])
    return shown + (f"; ... and {len(items) - n} more" if len(items) > n else "")


# ----------------------------------------------------------------------------- classes


def kinetics400_classes() -> list[str]:
    text = resources.files("sfcli").joinpath("kinetics400_labels.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def default_classes(num_classes: int) -> tuple[list[str], str]:
    """Class names for weights that carry none: the Kinetics-400 names (alphabetical, the
    order of the reference checkpoints) for 400 classes, else class_0, class_1, ..."""
    if num_classes == 400:
        names = kinetics400_classes()
        if len(names) == 400:
            return names, "kinetics400"
    return [f"class_{i}" for i in range(num_classes)], "generic"


# ----------------------------------------------------------------------------- the whole file


RUN_CHECKPOINT = "checkpoint.pt"  # the latest checkpoint inside a run folder


def resolve_checkpoint(path) -> Path:
    """A checkpoint file, a run folder's latest checkpoint, or the cached file of named official
    weights (downloaded on first use)."""
    if weights := hub.named(path):
        return hub.fetch(weights)
    path = Path(path)
    if path.is_dir():
        if not (path / RUN_CHECKPOINT).is_file():
            raise CheckpointError(f"{path} is a folder without {RUN_CHECKPOINT}: not a finished or started sfcli run")
        return path / RUN_CHECKPOINT
    return path


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds besides its weights, settled without building the network."""

    path: str  # as given: a file or a run folder
    format: str  # the layout it was read from, one of layouts.LAYOUTS
    arch: str
    config: ModelConfig
    classes: list[str]  # the checkpoint's, else the defaults `convert` writes
    classes_source: str  # "checkpoint", "kinetics400" or "generic"
    epoch: int | None
    clip: dict | None  # the ClipConfig fields an sfcli run trained with

    def to_json(self) -> dict:
        return {"path": self.path, "format": self.format, "arch": self.arch, "config": self.config.to_dict(),
                "classes": list(self.classes), "classes_source": self.classes_source, "epoch": self.epoch,
                "clip": self.clip}


def read_checkpoint(path, arch: str | None = None, **overrides) -> tuple[dict, CheckpointInfo]:
    """(state dict in sfcli's layout, info) from any of the formats, a file or a run folder's
    latest checkpoint, without building the network.

    sfcli checkpoints keep their own model_config (overrides such as frames or dropout apply on
    top; an `arch` other than the saved one is an error). Foreign ones take `arch`, or the preset
    `infer_config` picks, with the structure the weights show."""
    file = resolve_checkpoint(path)
    if arch is None and (weights := hub.named(path)):
        arch = weights.arch  # the zoo's network: Slow 4x16 and 8x8 have the same tensors
    checkpoint = load_caffe2(file) if is_caffe2(file) else load_checkpoint(file)
    fmt, sd = unwrap(checkpoint, f"checkpoint {file}")
    state_dict = translate(sd, fmt, "sfcli")
    if fmt == "caffe2":
        state_dict = fit_caffe2_shapes(state_dict)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    saved = checkpoint.get("model_config") if checkpoint.get("format") == FORMAT else None
    version = checkpoint.get("version", VERSION) if checkpoint.get("format") == FORMAT else VERSION
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"checkpoint {file} is sfcli format version {version!r}, not one this "
                              f"sfcli reads ({VERSION}); a newer sfcli may read it")
    if isinstance(saved, Mapping):
        saved_arch = checkpoint.get("arch") or "custom"
        if arch is not None and arch != saved_arch:
            raise CheckpointError(f"checkpoint {file} holds a {saved_arch} network, not {arch}; leave out the "
                                  f"architecture to use the checkpoint's own")
        try:
            config = ModelConfig.from_dict({**saved, **overrides})
        except (ConfigError, TypeError) as err:
            raise CheckpointError(f"checkpoint {file} has an invalid model config: {err}") from None
        _check_config_fits(config, state_dict, file, overrides)
        arch = saved_arch
    else:
        if arch is None and checkpoint.get("arch") in PRESETS:  # sfcli format, config left out
            arch = checkpoint["arch"]
        hints = pyslowfast_cfg_hints(checkpoint.get("cfg")) if fmt == "pyslowfast" else {}
        try:
            arch, config = infer_config(state_dict, arch, hints=hints, **overrides)
        except CheckpointError as err:
            raise CheckpointError(f"checkpoint {file}: {err}") from None
    classes, source = checkpoint.get("classes"), "checkpoint"
    if not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
        classes, source = default_classes(config.num_classes)
    elif len(classes) != config.num_classes:
        raise CheckpointError(f"checkpoint {file} names {len(classes)} classes but its network has "
                              f"{config.num_classes} outputs")
    epoch = checkpoint.get("epoch")
    info = CheckpointInfo(str(path), fmt, arch, config, list(classes), source,
                          epoch if isinstance(epoch, int) else None, _clip_settings(checkpoint.get("clip"), file))
    return state_dict, info


# What stored view settings may ask for, so that a damaged or hostile file cannot make sfcli cut
# (and allocate) views of any size: pixels of a side (4K's short side is 2160), clips, frames.
CLIP_LIMITS = {"crop": 4096, "min_short": 4096, "max_short": 4096, "test_short": 4096, "test_crop": 4096,
               "num_clips": 100, "num_crops": 3, "frames": LIMITS["frames"], "stride": LIMITS["tau"],
               "max_stride": LIMITS["tau"]}
OPTIONAL_CLIP = {"max_stride"}  # None: off


def _clip_settings(clip, file: Path) -> dict | None:
    """A run's stored ClipConfig fields, checked before anything is cut by them."""
    if clip is None:
        return None
    known = {f.name for f in dataclasses.fields(ClipConfig)}
    if not isinstance(clip, Mapping):
        problem = f"a {type(clip).__name__}, not a dict"
    elif set(clip) - known:
        problem = f"unknown setting {sorted(set(clip) - known)[0]!r}"
    else:
        problem = next((f"{k} {v!r}, not an integer from 1 to {CLIP_LIMITS[k]:,}" for k, v in clip.items()
                        if k in CLIP_LIMITS and not (type(v) is int and 1 <= v <= CLIP_LIMITS[k])
                        and not (v is None and k in OPTIONAL_CLIP)), None)
    if problem is None:
        try:
            ClipConfig(**clip)
        except (TypeError, ValueError) as err:
            problem = str(err)
    if problem:
        raise CheckpointError(f"checkpoint {file} has malformed view settings (clip: {problem})")
    return dict(clip)


def _check_config_fits(config: ModelConfig, state_dict: Mapping, file: Path, overridden) -> None:
    """Settings a checkpoint stores are held against its tensors before a network is built from
    them: a few bytes asking for width 100000 would otherwise allocate gigabytes."""
    try:
        shown = infer_fields(state_dict)
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {file}: {err}") from None
    for name in ("pathway", "depth", "width", "beta", "num_classes"):  # those the tensors settle alone
        value = shown.get(name)
        if name not in overridden and value is not None and getattr(config, name) != value:
            raise CheckpointError(f"checkpoint {file} says {name} {getattr(config, name)} but its weights "
                                  f"have {name} {value}; the file is damaged or was edited")


def load_model(path, arch: str | None = None, **overrides) -> tuple[SlowFast, CheckpointInfo]:
    """(model in eval mode, info) from a checkpoint in any of the formats (see `read_checkpoint`)."""
    state_dict, info = read_checkpoint(path, arch, **overrides)
    model = SlowFast(info.config)
    load_weights(model, state_dict, source=str(path))
    return model.eval(), info


def make_payload(model: SlowFast, classes, arch: str = "custom", **extra) -> dict:
    """sfcli's checkpoint dict for a model; `extra` adds training state (optimizer, step, ...)."""
    classes = list(classes)
    if len(classes) != model.cfg.num_classes:
        raise CheckpointError(f"{len(classes)} class names given for a network with {model.cfg.num_classes} outputs")
    return {"format": FORMAT, "version": VERSION, "arch": arch, "model_config": model.cfg.to_dict(),
            "classes": classes, "model": model.state_dict(), **extra}


def save_model(model: SlowFast, path, classes, arch: str = "custom") -> Path:
    """Write `model` as an sfcli checkpoint (weights, network settings, class names) that every
    sfcli command and `load_model` read."""
    return save_checkpoint(path, make_payload(model, classes, arch))


@dataclass(frozen=True)
class Conversion:
    """What `convert` read and wrote."""

    source: str
    destination: str
    format: str
    arch: str
    num_classes: int
    classes_source: str  # "given", or as in CheckpointInfo
    params: int
    tensors: int
    config: ModelConfig

    def to_json(self) -> dict:
        return {"source": self.source, "destination": self.destination, "format": self.format, "arch": self.arch,
                "num_classes": self.num_classes, "classes_source": self.classes_source, "params": self.params,
                "tensors": self.tensors, "config": self.config.to_dict()}


def convert(src, dst, arch: str | None = None, classes=None, **overrides) -> Conversion:
    """Read a checkpoint in any format, check it builds and loads, and write it as an sfcli
    checkpoint (weights, config, class names only). Classes: `classes` if given, else the
    checkpoint's, else Kinetics-400's names for 400 outputs, else class_0, class_1, ..."""
    dst = Path(dst)
    if dst.name == RUN_CHECKPOINT and dst.is_file() and "optimizer" in load_checkpoint(dst):
        raise CheckpointError(f"{dst} is a run's training checkpoint, which resumes the run; write the converted "
                              f"weights to another file")
    model, info = load_model(src, arch, **overrides)
    if classes is not None:
        names, source = list(classes), "given"
    else:
        names, source = list(info.classes), info.classes_source
    # A run's view settings (crop, frames) go with its weights: the network is tested as it was trained.
    view = {"clip": info.clip} if info.clip else {}
    payload = make_payload(model, names, info.arch, converted_from={"path": str(src), "format": info.format}, **view)
    save_checkpoint(dst, payload)
    return Conversion(str(src), str(dst), info.format, info.arch, model.cfg.num_classes, source, count_params(model),
                      len(payload["model"]), model.cfg)

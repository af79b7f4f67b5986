"""`sfcli export`: a network as a file other runtimes load (ONNX, TorchScript, or torch.export's
ExportedProgram) and, beside it, a JSON of what its input must be; and an ONNX file read back as a
Predictor for `sfcli infer --onnx`.

The exported graph is the inference network with BN folded into plain convs (fuse_bn with
onednn=False: no private oneDNN op in it) and a dynamic batch dimension. Every export is run on a
random clip of another batch size than it was traced with and compared with sfcli's own forward
(the inference network `sfcli infer` runs, oneDNN's fused convs and its test head included); a
larger difference than TOLERANCE is an ExportError."""

from __future__ import annotations

import dataclasses
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from sfcli.checkpoint import CheckpointInfo, load_model
from sfcli.data import ClipConfig
from sfcli.errors import ConfigError, ExportError
from sfcli.files import write_atomic
from sfcli.fused import fuse_bn
from sfcli.model_config import ModelConfig
from sfcli.predict import Predictor, load_predictor
from sfcli.videolist import read_labels_file

FORMATS = ("onnx", "torchscript", "exported-program")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
# Largest difference from sfcli's forward, relative to the largest logit (at least 1): folding BN
# rounds differently, by about 1e-6 of the logits (measured on slowfast_tiny and R50).
TOLERANCE = 1e-4
TRACE_BATCH, CHECK_BATCH = 2, 3  # checked at another batch size than traced: the batch is dynamic
ONNX_OPSET = 17


@dataclass(frozen=True)
class InputContract:
    """What an exported network takes: float32 clips (batch, 3, frames, crop, crop), NCTHW, of
    `frames` frames `stride` apart on the 30 fps time base, short side resized to `short_side` and
    centre-cropped (or three crops across the long side) to `crop`, then (pixel / 255 - mean) / std;
    out come scores (batch, classes) in the order of `classes`, whose softmax is sfcli's class
    probabilities (logits, or log-probabilities where the test head averages positions)."""

    shape: tuple
    frames: int
    stride: int
    crop: int
    short_side: int
    mean: float
    std: float
    classes: tuple[str, ...]
    arch: str
    model_config: dict
    clip: dict  # the whole ClipConfig, for `sfcli infer --onnx`
    layout: str = "NCTHW"
    dtype: str = "float32"
    input_name: str = "clip"
    output_name: str = "logits"

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"shape": list(self.shape), "classes": list(self.classes)}


@dataclass(frozen=True)
class ExportResult:
    path: str
    contract: str  # the JSON beside it
    format: str
    input_shape: tuple
    max_error: float  # largest |exported - sfcli| over the check clip's logits
    checked_batch: int

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"input_shape": list(self.input_shape)}


def contract_path(path) -> Path:
    return Path(path).with_suffix(".json")


def export_model(weights, out, fmt: str, arch: str | None = None, labels=None, seed: int = 0) -> ExportResult:
    """Export any checkpoint sfcli reads to `out` in format `fmt` (one of FORMATS), with its input
    contract in `out` with suffix .json; the file is written only once its check has passed."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    # sfcli's own forward is the network `sfcli infer` runs: its class names, views and test head.
    reference = load_predictor(weights, arch, labels, device="cpu")
    clip, info = reference.clip, reference.info
    shape = ("batch", 3, clip.frames, clip.test_crop, clip.test_crop)
    contract = InputContract(shape, clip.frames, clip.stride, clip.test_crop, clip.test_short, clip.mean, clip.std,
                             tuple(reference.classes), info.arch, info.config.to_dict(), dataclasses.asdict(clip))
    plain = fuse_bn(load_model(weights, arch)[0], onednn=False)
    plain.head_window = reference.model.head_window
    for pathway in (plain.slow, plain.fast):  # the legacy ONNX exporter has no memory formats
        if pathway is not None:
            pathway.memory_format = torch.contiguous_format
    rng = torch.Generator().manual_seed(seed)
    example, check = (torch.randn(n, *shape[1:], generator=rng) for n in (TRACE_BATCH, CHECK_BATCH))
    with torch.no_grad(), warnings.catch_warnings():
        # The exporters' notes on their own internals (the TorchScript-based ONNX exporter, which
        # needs no onnxscript, is deprecated; the tracer converts tensors to bools) mean nothing here.
        warnings.simplefilter("ignore")
        data, run = _EXPORTERS[fmt](plain, example)
        expected, got = reference.model(check), run(data, check)
    error = float((got - expected).abs().max())
    if not error <= TOLERANCE * max(1.0, float(expected.abs().max())):  # also catches NaN
        raise ExportError(f"the {fmt} export differs from sfcli's forward by up to {error:.3g}, "
                          f"more than the {TOLERANCE:g} allowed, so {out} was not written")
    write_atomic(out, data)
    write_atomic(contract_path(out), json.dumps(contract.to_json(), indent=2) + "\n")
    return ExportResult(str(out), str(contract_path(out)), fmt, shape, error, CHECK_BATCH)


def _onnx(model, example):
    buffer = io.BytesIO()
    torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=["clip"], output_names=["logits"],
                      dynamic_axes={"clip": {0: "batch"}, "logits": {0: "batch"}}, opset_version=ONNX_OPSET)
    return buffer.getvalue(), lambda data, clip: OnnxNetwork(data)(clip)


def _torchscript(model, example):
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(model, (example,)), buffer)
    return buffer.getvalue(), lambda data, clip: torch.jit.load(io.BytesIO(data))(clip)


def _exported_program(model, example):
    buffer = io.BytesIO()
    program = torch.export.export(model, (example,), dynamic_shapes={"clip": {0: torch.export.Dim("batch")}})
    torch.export.save(program, buffer)
    return buffer.getvalue(), lambda data, clip: torch.export.load(io.BytesIO(data)).module()(clip)


_EXPORTERS = {"onnx": _onnx, "torchscript": _torchscript, "exported-program": _exported_program}


def _onnx_session(model):
    """An onnxruntime CPU session of an ONNX file or its bytes."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("ONNX needs onnxruntime: pip install 'sfcli[onnx]'") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
    return onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                        providers=["CPUExecutionProvider"])


class OnnxNetwork:
    """An exported ONNX network (a file or its bytes) called like the torch one: float32 clips in,
    logits out."""

    def __init__(self, model):
        self.session = _onnx_session(model)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"clip": clip.float().contiguous().numpy()})[0])


def load_onnx_predictor(path, labels=None, views: tuple[int, int] = (10, 3)) -> Predictor:
    """A Predictor running an `sfcli export --format onnx` file through onnxruntime, with the
    view settings and class names of the JSON beside it (class names from `labels` if given)."""
    path, side = Path(path), contract_path(path)
    if not path.is_file():
        raise ConfigError(f"ONNX file {path} does not exist")
    try:
        contract = json.loads(side.read_text())
        clip = ClipConfig(**contract["clip"])
        config, classes = ModelConfig.from_dict(contract["model_config"]), list(contract["classes"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{side} is not the input contract `sfcli export` writes beside {path.name} "
                          f"({type(err).__name__})") from None
    if labels is not None:
        classes = read_labels_file(labels)
        if len(classes) != config.num_classes:
            raise ConfigError(f"{labels} names {len(classes)} classes but the network has {config.num_classes} outputs")
    clip = dataclasses.replace(clip, num_clips=views[0], num_crops=views[1])
    info = CheckpointInfo(str(path), "onnx", contract["arch"], config, classes, "checkpoint", None, contract["clip"])
    return Predictor(OnnxNetwork(path), classes, clip, torch.device("cpu"), info)

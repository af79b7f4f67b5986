"""Batch norm in training mode needs more than one value per channel (the variance of one value is
undefined, and torch refuses it): a clip of few frames at a small crop, a few clips at a time,
can leave one at res5. A run checks its clip shapes before it writes anything, by a forward pass
on the meta device (shapes only, no arithmetic and no memory)."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import torch
from torch import nn

from sfcli.errors import TrainingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmallestBatchNorm:
    values: int  # per channel: batch x time x height x width of the layer's input
    layer: str
    frames: int  # the clip's
    crop: int


def smallest_batch_norm(model: nn.Module, shapes: list[tuple[int, int]], clips: int) -> SmallestBatchNorm | None:
    """The training-mode BN layer that sees the fewest values per channel when `model` (as it is,
    in its modes) runs `clips` clips of each (frames, crop) in `shapes`; None if a meta pass
    cannot run this network."""
    names = {module: name for name, module in model.named_modules()}
    meta = {name: torch.empty_like(t, device="meta")
            for name, t in itertools.chain(model.named_parameters(), model.named_buffers())}
    inputs: list[tuple[int, str]] = []  # (values per channel, layer) of the pass running
    seen: list[SmallestBatchNorm] = []

    def record(module, args):
        inputs.append((args[0].numel() // args[0].shape[1], names[module]))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    try:
        for frames, crop in shapes:
            inputs.clear()
            try:
                torch.func.functional_call(model, meta, (torch.empty(clips, 3, frames, crop, crop, device="meta"),))
            except ValueError:  # BN's own refusal, after its input was recorded
                pass
            seen += [SmallestBatchNorm(values, layer, frames, crop) for values, layer in inputs]
    except Exception as err:  # an op without a meta kernel: the run goes on unchecked
        log.debug("batch-norm size check skipped: %s: %s", type(err).__name__, err)
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return min(seen, key=lambda s: s.values, default=None)


def check_batch_norm(model: nn.Module, shapes: list[tuple[int, int]], clips: int) -> None:
    smallest = smallest_batch_norm(model, shapes, clips)
    if smallest is not None and smallest.values < 2:
        raise TrainingError(f"batch norm in training needs more than one value per channel, and {smallest.layer} "
                            f"gets {smallest.values} from {clips} clip(s) per process of {smallest.frames} frames at "
                            f"{smallest.crop}²; raise --batch-size, --crop or --frames")

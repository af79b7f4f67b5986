"""Precise BN: the running mean and variance of every BN layer recomputed as plain averages over
batches of training clips through the trained network, as every reference Kinetics config does
before testing (BN.USE_PRECISE_STATS, 200 batches). The running averages kept during training mix
statistics of weights that have since changed; these are of the weights that are tested."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sfcli.errors import TrainingError


@torch.no_grad()
def update_bn_stats(model: nn.Module, clips: Iterable[torch.Tensor]) -> int:
    """Replace every BN layer's running statistics with their mean over the batches of
    normalised clips `clips` (each layer's batch means and unbiased batch variances, averaged
    with equal weight per batch, by BN's own cumulative average). Nothing else changes; the model
    is left in the mode it was in. Returns the number of batches used."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in layers]
    was_training = model.training
    model.train()
    batches = 0
    try:
        for x in clips:
            if batches == 0:
                for bn in layers:
                    bn.reset_running_stats()
                    bn.momentum = None  # cumulative average: batch k enters with weight 1/k, so all count alike
            model(x)
            batches += 1
    finally:
        for bn, momentum in zip(layers, momenta):
            bn.momentum = momentum
        model.train(was_training)
    if batches == 0:
        raise TrainingError("precise BN got no batches of training clips")
    return batches

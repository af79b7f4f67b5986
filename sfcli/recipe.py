"""The paper's training recipe: its settings, the warm-up + half-cosine learning rate, SGD with
Nesterov momentum, and the seeds and batch order that make a resumed run draw what an
uninterrupted one would."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sfcli import multigrid

# Warm-up starts at this fraction of the base rate: the reference's Kinetics configs warm up from
# WARMUP_START_LR 0.01 with BASE_LR 0.1 (and for 34 of 196 epochs).
WARMUP_START = 0.1


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 16  # total over all processes
    lr: float | None = None  # None: 0.1 per 64 clips of total batch
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-4
    precise_bn: int = 0  # batches to recompute BN statistics from after each epoch (0: off)
    momentum: float = 0.9
    seed: int = 0
    amp: bool = False
    multigrid: bool = False  # long and short cycles (sfcli.multigrid); epochs is then the stepwise recipe's
    # Settings that do not change what is computed (may differ when a run resumes):
    workers: int = 2
    device: str = "auto"
    decoder: str = "auto"
    frame_cache_mb: int = 2048  # decode a dataset once and keep its frames when they fit in this; 0: off
    checkpoint_every: int = 0  # steps; 0: only at the end of each epoch
    log_every: int = 0  # steps between loss/lr records in metrics.jsonl; 0: epochs only
    tensorboard: bool = False  # TensorBoard event files in the run folder too
    val_every: int = 1  # epochs between validations; the last epoch is always validated
    val_views: tuple[int, int] = (1, 1)  # (clips, crops) of the per-epoch validation; the final test uses the run's

    @property
    def run_epochs(self) -> int:
        """Epochs the run trains for: multigrid's schedule ends where its last phase does (about
        EPOCH_FACTOR times the epochs, far cheaper each), as the reference's MAX_EPOCH."""
        return multigrid.schedule(self.epochs)[-1].end if self.multigrid else self.epochs

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else 0.1 * self.batch_size / 64


RESUMABLE = ("workers", "device", "decoder", "frame_cache_mb", "checkpoint_every", "log_every", "tensorboard",
             "val_every", "val_views")


def learning_rate(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Half-period cosine over the whole run; during warm-up, a straight line from
    base_lr * WARMUP_START to where the cosine is at the warm-up's end."""
    cosine = lambda s: base_lr * 0.5 * (math.cos(math.pi * s / total_steps) + 1)  # noqa: E731
    if step < warmup_steps:
        start, end = base_lr * WARMUP_START, cosine(warmup_steps)
        return start + (end - start) * step / warmup_steps
    return cosine(step)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum; no weight decay on batch-norm weights and biases only, as the
    reference (the classifier's and the non-local convs' biases decay like the weights)."""
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)
          for p in m.parameters(recurse=False)}
    decay = [p for p in model.parameters() if id(p) not in bn]
    no_decay = [p for p in model.parameters() if id(p) in bn]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # Fused: one pass over each parameter, its gradient and its momentum per step, where torch's
    # default runs five: 29 against 60 ms per step for the 34M parameters of slowfast_8x8_r50 on
    # the CPU here (measured), about 5% of a training step. (torch's fused kernel assumes each
    # gradient is laid out like its parameter, which autograd and DDP guarantee.)
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum, nesterov=True, fused=fused)


def step_seed(seed: int, epoch: int, step: int) -> int:
    """The seed of one step's own randomness (dropout): a function of where the run is, so a
    resumed run draws exactly what an uninterrupted one would."""
    return int(np.random.SeedSequence([seed, epoch, step]).generate_state(1)[0])


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def rank_batches(order: list[int], batch_size: int, rank: int, world_size: int) -> list[list[int]]:
    """Full batches of the epoch (a last partial batch is dropped), each split into equal
    contiguous shares, one per process."""
    share = batch_size // world_size
    return [order[b + rank * share : b + (rank + 1) * share]
            for b in range(0, len(order) - batch_size + 1, batch_size)]

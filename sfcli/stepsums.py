"""What a training step reports (its loss x clips, correct clips, clips), kept on the device so
that a step neither waits for the host nor talks to the other processes: every REDUCE_EVERY
steps, and wherever the run's state is read (step records, checkpoints, the epoch's end), one
all_reduce of one small tensor. The host then adds the steps one by one, so the run's sums are
exactly those of a reduction after every step."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from sfcli.distributed import all_sum, gather
from sfcli.errors import TrainingError
from sfcli.runs import RunState
from sfcli.stopsignals import STOPS  # one column each in the reduced tensor

# A non-finite loss, and a stop signal under torchrun, are seen up to REDUCE_EVERY - 1 steps late.
REDUCE_EVERY = 20


class StepSums:
    """One process's steps since the last reduction, a row each on the device, and the videos it
    quarantined since they were last gathered (once per epoch and before each checkpoint)."""

    def __init__(self, device: torch.device):
        self.rows = torch.zeros(REDUCE_EVERY + 1, 3, dtype=torch.float64, device=device)  # + the stop row
        self.pending = 0
        self.failures: list[tuple[int, int, str]] = []  # (step, dataset index, reason)

    @property
    def full(self) -> bool:
        return self.pending == REDUCE_EVERY

    def add(self, step: int, loss_sum: torch.Tensor, hits: torch.Tensor, clips: int, failures) -> None:
        """One step's summed loss (float64: each chunk's mean loss x its clips), hits and clips."""
        row = self.rows[self.pending]
        row[0] = loss_sum
        row[1] = hits.sum()
        row[2] = clips
        self.pending += 1
        self.failures += [(step, index, reason) for index, reason in failures]

    def reduce(self, state: RunState, signum: int, checkpoint: Path) -> int:
        """Add every process's steps since the last reduction to `state` and return the stop
        signal any process got (the larger one, if they differ); a non-finite loss stops the run.
        Every checkpoint is written after a reduction, so none holds the weights of the steps
        taken after such a loss."""
        part = self.rows[: self.pending + 1]
        part[self.pending] = torch.tensor([signum == s for s in STOPS] + [0], dtype=torch.float64)
        *steps, stops = all_sum(part).tolist()
        for step, (loss_sum, correct, clips) in enumerate(steps, state.step - self.pending + 1):
            if not math.isfinite(loss_sum):
                raise TrainingError(
                    f"the loss became {'nan' if math.isnan(loss_sum) else 'infinite'} at epoch {state.epoch + 1} "
                    f"step {step}; the run stopped, "
                    + (f"and its last good checkpoint is kept in {checkpoint} " if checkpoint.exists()
                       else "before its first checkpoint ")
                    + "(try a lower --lr)")
            state.loss_sum += loss_sum
            state.correct += correct
            state.clips += clips
        self.pending = 0
        return max((s for s, n in zip(STOPS, stops) if n), default=0)

    def gather_failures(self, state: RunState, paths) -> None:
        """Every process's quarantined videos into `state`, in the order of a gather after every
        step (step, then rank); a collective."""
        everyone = sorted((f for part in gather(self.failures) for f in part), key=lambda f: f[0])
        for _, index, reason in everyone:
            state.bad_videos.setdefault(str(paths[index]), reason)
        self.failures = []

"""Multigrid training (Wu et al., "A Multigrid Method for Efficiently Training Video Models",
CVPR 2020), as PySlowFast's MULTIGRID options schedule it.

The long cycle trains on coarser clips first: fewer frames, each clip at a stride drawn from the
full clip's to the one that spans the full clip's time (the reference's LONG_CYCLE_SAMPLING_RATE),
and smaller crops, with a batch that many times larger, so every step costs about the same. Each of
the stepwise schedule's learning-rate stages runs the four long-cycle shapes in turn, each for a
share of the stage in proportion to its batch; a last phase fine-tunes at the full shape. The
short cycle alternates, step by step, two smaller crops (half and 1/sqrt(2) of the full side,
with 4x and 2x the batch) with the long cycle's own. The learning rate follows the reference's
stepwise schedule, each phase's rate scaled by its batch (the linear scaling rule), and training
runs 1.5x the epochs it is given, each epoch being far cheaper. Shapes change at epoch ends only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sfcli.console import Reporter
from sfcli.data import ClipConfig
from sfcli.errors import ConfigError

LONG_CYCLE = ((0.25, 0.5**0.5), (0.5, 0.5**0.5), (0.5, 1.0), (1.0, 1.0))  # (frames, side) factors
SHORT_CYCLE = (0.5, 0.5**0.5)  # sides, relative to the full crop
EPOCH_FACTOR = 1.5
# The reference's stepwise Kinetics recipe: rate x1, x0.1, x0.01 from these epochs of 239, then
# the last stage; as fractions of the epochs given.
STAGE_STARTS = (0, 94 / 239, 154 / 239, 196 / 239)
GAMMA = 0.1


@dataclass(frozen=True)
class Phase:
    stage: int  # learning-rate stage: the rate is base * GAMMA**stage * lr_scale
    batch_factor: int  # the long cycle's batch, relative to the given batch size
    frames_factor: float
    side_factor: float
    end: int  # the epoch (of the multigrid run) where the phase ends
    lr_scale: float

    def rate(self, base_lr: float) -> float:
        return base_lr * GAMMA**self.stage * self.lr_scale


def long_cycle_shapes(short_cycle: bool) -> list[list[tuple[float, float, float]]]:
    """For each long-cycle shape, the (batch factor, frames factor, side factor) of its steps."""
    shapes = []
    for t, s in LONG_CYCLE:
        sides = [*SHORT_CYCLE, s] if short_cycle else [s]
        shapes.append([(1 / (t * side * side), t, side) for side in sides])
    return shapes


def schedule(epochs: int, short_cycle: bool = True) -> list[Phase]:
    """The phases of a multigrid run standing in for `epochs` epochs of the stepwise recipe."""
    shapes = long_cycle_shapes(short_cycle)
    mean_batch = [sum(round(b) for b, _, _ in steps) / len(steps) for steps in shapes]
    stages = [epochs * f for f in STAGE_STARTS]
    planned, iterations = [], 0.0
    for stage in range(len(stages) - 1):
        length = stages[stage + 1] - stages[stage]
        for index, steps in enumerate(shapes):
            share = length * mean_batch[index] / sum(mean_batch)
            iterations += share / mean_batch[index]
            planned.append((stage, steps[-1], share))
    # The fine-tuning phase saves as many iterations as the rest of the run.
    saving = stages[-1] / iterations
    planned.append((len(stages) - 1, shapes[-1][-1], (epochs - stages[-1]) / saving * mean_batch[-1]))
    stretch = epochs * EPOCH_FACTOR / sum(p[2] for p in planned)
    phases, total = [], 0.0
    for stage, (batch, t, s), share in planned:
        total += share * stretch
        phases.append(Phase(stage, round(batch), t, s, round(total), round(batch)))
    # The reference's last phase runs its first half at the previous phase's rate.
    last = phases[-1]
    middle = (phases[-2].end + last.end) // 2
    return [*phases[:-1], dataclasses.replace(last, end=middle, stage=phases[-2].stage, lr_scale=phases[-2].lr_scale),
            last]


@dataclass(frozen=True)
class PlannedShape:
    """Epochs first..last (1-based) of a multigrid run at one long-cycle shape and rate."""

    first_epoch: int
    last_epoch: int
    batch: int  # the long cycle's own steps; the short cycle's are larger
    frames: int
    crop: int
    lr: float  # after the warm-up

    @property
    def epochs(self) -> str:
        return f"{self.first_epoch}-{self.last_epoch}" if self.last_epoch > self.first_epoch else f"{self.first_epoch}"


def planned_shapes(phases: list[Phase], clip: ClipConfig, batch_size: int, base_lr: float,
                   ) -> tuple[list[PlannedShape], int]:
    """What a run of `phases` trains at, epoch by epoch, and how many phases it skips: shapes
    change at epoch ends, so a phase whose share of the schedule rounds to no epoch never runs
    (a short run's full-shape phases first)."""
    shapes, start = [], 0
    for phase in phases_run(phases):
        (_, long_clip), = step_clips(clip, phase, short_cycle=False)
        shapes.append(PlannedShape(start + 1, phase.end, phase.batch_factor * batch_size, long_clip.frames,
                                   long_clip.crop, phase.rate(base_lr)))
        start = phase.end
    return shapes, len(phases) - len(shapes)


def report_schedule(reporter: Reporter, phases: list[Phase], clip: ClipConfig, batch_size: int, base_lr: float,
                    epochs: int) -> None:
    """The schedule a run of `phases` (standing in for `epochs` epochs) follows, as a table, and a
    warning where some of its phases get no epoch."""
    shapes, skipped = planned_shapes(phases, clip, batch_size, base_lr)
    reporter.table("the multigrid schedule (the short cycle adds smaller crops in larger batches)", [
        (s.epochs, s.batch, s.frames, f"{s.crop}²", f"{s.lr:.3g}") for s in shapes],
        ("epochs", "batch", "frames", "crop", "lr after warm-up"))
    if skipped:
        full = sum(s.last_epoch - s.first_epoch + 1 for s in shapes if (s.frames, s.crop) == (clip.frames, clip.crop))
        given = f"{epochs} epoch" + "s" * (epochs != 1)
        reporter.warn([f"--multigrid at {given}: {skipped} of the schedule's {len(phases)} phases round to no "
                       f"epoch (shapes change at epoch ends) and {full} of its {phases[-1].end} epochs "
                       "train at the full shape; the schedule is made for runs of many epochs"])


def phases_run(phases: list[Phase]) -> list[Phase]:
    """The phases that get at least one epoch (the rest end where an earlier one does)."""
    return [p for i, p in enumerate(phases) if p.end > max((q.end for q in phases[:i]), default=0)]


def phase_at(phases: list[Phase], epoch: float) -> Phase:
    return next((p for p in phases if epoch < p.end), phases[-1])


def learning_rate(phases: list[Phase], epoch: float, base_lr: float, warmup_epochs: float,
                  warmup_start: float) -> float:
    """The reference's stepwise rate at (fractional) `epoch`, after a linear warm-up from
    base_lr * warmup_start to the rate at the warm-up's end."""
    def stepwise(e):
        return phase_at(phases, e).rate(base_lr)
    if epoch < warmup_epochs:
        start, end = base_lr * warmup_start, stepwise(warmup_epochs)
        return start + (end - start) * epoch / warmup_epochs
    return stepwise(epoch)


def step_clips(clip: ClipConfig, phase: Phase, short_cycle: bool) -> list[tuple[int, ClipConfig]]:
    """(batch factor, clip settings) of the steps one short cycle runs in `phase`; a coarser clip's
    stride is drawn per clip up to the one at which its frames span the full clip's time, and its
    short side shrinks with its crop."""
    frames = max(1, round(clip.frames * phase.frames_factor))
    max_stride = clip.stride * (clip.frames // frames)
    long_crop = round(clip.crop * phase.side_factor)
    crops = [round(clip.crop * f) for f in SHORT_CYCLE] + [long_crop] if short_cycle else [long_crop]
    steps = []
    for crop in crops:
        scale = crop / clip.crop
        batch = phase.batch_factor * round((long_crop / crop) ** 2)
        steps.append((batch, dataclasses.replace(clip, frames=frames, crop=crop,
                                                 max_stride=max_stride if max_stride > clip.stride else None,
                                                 min_short=round(clip.min_short * scale),
                                                 max_short=round(clip.max_short * scale))))
    return steps


def clip_shapes(clip: ClipConfig, phases: list[Phase], short_cycle: bool = True) -> list[tuple[int, int]]:
    """The (frames, crop) of every step of the phases that run."""
    return sorted({(c.frames, c.crop) for phase in phases_run(phases) for _, c in step_clips(clip, phase, short_cycle)})


def epoch_batches(order: list[int], clip: ClipConfig, phase: Phase, batch_size: int, world_size: int,
                  short_cycle: bool = True) -> list[list[tuple[int, ClipConfig]]]:
    """The epoch's steps: whole batches over all processes, cycling through the short cycle's
    shapes; each batch a multiple of world_size so that every process gets an equal share."""
    cycle = step_clips(clip, phase, short_cycle)
    batches, start, n = [], 0, 0
    while True:
        factor, step_clip = cycle[n % len(cycle)]
        size = min(max(world_size, factor * batch_size // world_size * world_size),
                   len(order) // world_size * world_size)  # a small dataset still gets a step
        if start + size > len(order):
            return batches
        batches.append([(i, step_clip) for i in order[start : start + size]])
        start, n = start + size, n + 1


def rank_share(batch: list, rank: int, world_size: int) -> list:
    share = len(batch) // world_size
    return batch[rank * share : (rank + 1) * share]


def check_clip(clip: ClipConfig, alpha: int) -> None:
    """Every long-cycle clip must keep whole Slow frames, at a whole stride."""
    for t, _ in LONG_CYCLE:
        frames = round(clip.frames * t)
        if frames < alpha or frames % alpha or clip.frames % frames:
            raise ConfigError(f"--multigrid takes clips of {frames} frames (x{t:g}) from {clip.frames}-frame clips, "
                              f"which leaves no whole Slow frame at alpha {alpha}; use more frames (--frames)")


__all__ = ["EPOCH_FACTOR", "LONG_CYCLE", "Phase", "PlannedShape", "SHORT_CYCLE", "check_clip", "clip_shapes",
           "epoch_batches", "learning_rate", "phase_at", "phases_run", "planned_shapes", "rank_share",
           "report_schedule", "schedule", "step_clips"]

"""What a run reports beside its checkpoint as it goes: loss and learning rate every N steps in
metrics.jsonl, TensorBoard event files (an optional extra), and which epoch's weights are the
best so far (kept as best.pt)."""

from __future__ import annotations

from pathlib import Path

from sfcli.distributed import is_main_process
from sfcli.errors import TrainingError
from sfcli.recipe import TrainConfig
from sfcli.runs import EpochRecord, RunState, StepRecord, append_metrics

TENSORBOARD_FOLDER = "tensorboard"


def summary_writer_class():
    """torch's SummaryWriter, which needs the tensorboard package; imported only when asked for."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError("--tensorboard needs the tensorboard package: pip install 'sfcli[tensorboard]'") from None
    return SummaryWriter


def validation_score(record: EpochRecord) -> float | None:
    """What `best` means: validation mAP for multi-label data, else top-1 (None when the epoch
    was not validated)."""
    return record.val_map if record.val_map is not None else record.val_top1


def is_best(record: EpochRecord, history) -> bool:
    """A validated epoch that beats every earlier one (the first validated epoch does)."""
    score = validation_score(record)
    earlier = [s for s in map(validation_score, history) if s is not None]
    return score is not None and all(score > s for s in earlier)


class RunLog:
    """Step records and TensorBoard scalars of one process's part of a run; only the main process
    writes. Built before the run folder is touched, so that a missing tensorboard stops the run
    before anything is written; `start` once the run's state is known."""

    def __init__(self, run: Path, cfg: TrainConfig, steps_per_epoch: int):
        self.run, self.every, self.steps_per_epoch = run, cfg.log_every, steps_per_epoch
        self.epoch_steps = steps_per_epoch  # this epoch's steps: multigrid's epochs differ
        self.writer_class = summary_writer_class() if cfg.tensorboard else None
        self.writer = None
        self.epoch, self.loss_sum, self.clips = -1, 0.0, 0.0

    def start(self, state: RunState) -> None:
        """Resuming: events past the checkpoint (written before a kill) are dropped by TensorBoard."""
        self.epoch, self.loss_sum, self.clips = state.epoch, state.loss_sum, state.clips
        if self.writer_class and is_main_process():
            self.writer = self.writer_class(str(self.run / TENSORBOARD_FOLDER), purge_step=self.global_step(state))

    def global_step(self, state: RunState) -> int:
        """The recipe's steps per epoch times the (fractional) epochs done: one axis, however many steps
        each multigrid epoch has."""
        return round((state.epoch + state.step / self.epoch_steps) * self.steps_per_epoch)

    def due(self, state: RunState) -> bool:
        """Whether this step gets a record (on every process: the sums are reduced for it)."""
        return bool(self.every) and state.step % self.every == 0

    def step(self, state: RunState, lr: float) -> None:
        """After each step: a record every `every` steps, of the loss over the steps since the last."""
        if state.epoch != self.epoch:  # a new epoch's sums start from zero
            self.epoch, self.loss_sum, self.clips = state.epoch, 0.0, 0.0
        if not self.due(state) or not is_main_process():
            return
        loss = (state.loss_sum - self.loss_sum) / max(state.clips - self.clips, 1.0)
        self.loss_sum, self.clips = state.loss_sum, state.clips
        record = StepRecord(state.epoch + 1, state.step, round(state.epoch + state.step / self.epoch_steps, 4),
                            round(loss, 5), lr)
        append_metrics(self.run, record)
        if self.writer:
            self.writer.add_scalar("train/loss", record.loss, self.global_step(state))
            self.writer.add_scalar("train/lr", lr, self.global_step(state))

    def epoch_done(self, record: EpochRecord) -> None:
        if self.writer:
            step = record.epoch * self.steps_per_epoch
            for name, value in (("epoch/loss", record.loss), ("epoch/train_top1", record.train_top1),
                                ("val/top1", record.val_top1), ("val/top5", record.val_top5)):
                if value is not None:
                    self.writer.add_scalar(name, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()

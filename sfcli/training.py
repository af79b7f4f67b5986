"""Training, nanoGPT style: `train` sets a run folder up (or resumes it) and calls `train_epoch`
until the run is done, validating after each epoch and testing once at the end. Under torchrun
each process trains on its share of every batch (DDP); only rank 0 writes."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from sfcli import multigrid
from sfcli.balance import ClassBalance
from sfcli.bn_sizes import check_batch_norm
from sfcli.checkpoint import RUN_CHECKPOINT, make_payload
from sfcli.console import Reporter
from sfcli.cost import count_params
from sfcli.data import ClipConfig, VideoDataset, collate
from sfcli.devices import amp_dtype, autocast, pick_device
from sfcli.distributed import all_max, gather, is_main_process, world
from sfcli.errors import Interrupted
from sfcli.evaluation import EvalResult, evaluate, ignore_interrupts
from sfcli.files import save_checkpoint, write_atomic
from sfcli.finetune import FineTuning
from sfcli.framecache import FrameCache, cached_decoder, run_videos
from sfcli.model import SlowFast
from sfcli.model_config import ModelConfig
from sfcli.precise_bn import update_bn_stats
from sfcli.predict import reference_head_window
from sfcli.recipe import WARMUP_START, TrainConfig, epoch_order, learning_rate, make_optimizer, rank_batches, step_seed
from sfcli.runlog import RunLog, is_best
from sfcli.runs import (
    BEST_CHECKPOINT,
    TEST_FILE,
    EpochRecord,
    RunState,
    TrainResult,
    append_metrics,
    check_run_inputs,
    open_run,
    run_config,
    save_run,
    weights_checksum,
)
from sfcli.stepsums import StepSums
from sfcli.stopsignals import StopSignals
from sfcli.transforms import normalize
from sfcli.videolist import VideoList


@dataclass
class Training:
    """What every step needs: the network and its DDP wrapper, the optimizer, the data, and where
    the run is (`state`, saved with each checkpoint)."""

    run: Path
    arch: str
    clip: ClipConfig
    cfg: TrainConfig
    model: SlowFast
    net: torch.nn.Module  # the model, or its DDP wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    dataset: VideoDataset
    device: torch.device
    state: RunState
    steps_per_epoch: int
    balance: ClassBalance | None = None  # --class-balance
    finetune: FineTuning | None = None  # frozen parts and the classifier's rate
    log: RunLog | None = None  # step records, TensorBoard
    phases: list[multigrid.Phase] | None = None  # --multigrid: the long cycle's phases

    @property
    def loss_weight(self) -> torch.Tensor | None:
        weight = self.balance.loss_weight if self.balance else None
        return None if weight is None else weight.to(self.device)

    @property
    def workers(self) -> int:
        """Loader processes: none when the frames are in memory, where reading them costs less than
        what worker processes take from the step's cores."""
        return 0 if isinstance(self.dataset.decoder, FrameCache) else self.cfg.workers

    @property
    def checkpoint_path(self) -> Path:
        return self.run / RUN_CHECKPOINT

    def epoch_batches(self, order: list[int], rank: int, world_size: int) -> list[list]:
        """This process's share of each batch of the epoch; multigrid's items carry their step's
        clip settings."""
        if not self.phases:
            return rank_batches(order, self.cfg.batch_size, rank, world_size)
        phase = multigrid.phase_at(self.phases, self.state.epoch)
        batches = multigrid.epoch_batches(order, self.clip, phase, self.cfg.batch_size, world_size)
        return [multigrid.rank_share(b, rank, world_size) for b in batches]

    def learning_rate(self) -> float:
        """The rate of the next step, from the schedule over the whole run."""
        if self.phases:
            epoch = self.state.epoch + self.state.step / self.steps_per_epoch
            return multigrid.learning_rate(self.phases, epoch, self.cfg.base_lr, self.cfg.warmup_epochs, WARMUP_START)
        total = self.cfg.epochs * self.steps_per_epoch
        warmup = min(round(self.cfg.warmup_epochs * self.steps_per_epoch), total - 1)
        return learning_rate(self.state.epoch * self.steps_per_epoch + self.state.step, total, warmup,
                             self.cfg.base_lr)

    def save(self) -> None:
        if is_main_process():
            payload = make_payload(self.model, self.dataset.videos.classes, self.arch,
                                   clip=dataclasses.asdict(self.clip), optimizer=self.optimizer.state_dict(),
                                   scaler=self.scaler.state_dict(), train_config=dataclasses.asdict(self.cfg))
            save_run(self.run, payload, self.state)

    def finish_epoch(self, record: EpochRecord) -> None:
        state = self.state
        if is_main_process() and is_best(record, state.history):  # before checkpoint.pt marks the epoch done
            save_checkpoint(self.run / BEST_CHECKPOINT, make_payload(
                self.model, self.dataset.videos.classes, self.arch, clip=dataclasses.asdict(self.clip),
                epoch=record.epoch))
        state.history.append(record)
        state.epoch, state.step = state.epoch + 1, 0
        state.loss_sum = state.correct = state.clips = state.seconds = 0.0
        self.save()
        if is_main_process():
            append_metrics(self.run, record)
            self.log.epoch_done(record)


def train_step(t: Training, batch: dict, lr: float, sums: StepSums) -> None:
    """One optimizer step on this process's share of a batch; its loss and accuracy stay on the
    device, in `sums`, until the next reduction. A share larger than the run's own (multigrid's
    coarse steps) runs in chunks of that size, their gradients summed: batch norm keeps the default
    recipe's statistics, as the reference's sub-batch BN, and memory stays a default step's."""
    state = t.state
    for group in t.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)  # FineTuning's classifier groups
    torch.manual_seed(step_seed(t.cfg.seed, state.epoch, state.step))
    x = normalize(batch["clip"].to(t.device, non_blocking=True), t.clip.mean, t.clip.std)
    y = batch["label"].to(t.device, non_blocking=True)
    share = t.cfg.batch_size // world()[1]
    chunks = list(zip(x.split(share), y.split(share)))
    t.optimizer.zero_grad(set_to_none=True)
    loss_sum, hits = 0.0, []
    for i, (x_chunk, y_chunk) in enumerate(chunks):
        last = i == len(chunks) - 1
        # Under DDP only the last chunk's backward reduces the gradients.
        with contextlib.nullcontext() if last or not hasattr(t.net, "no_sync") else t.net.no_sync():
            loss, chunk_hits = chunk_loss(t, x_chunk, y_chunk)
            t.scaler.scale(loss * (len(y_chunk) / len(y))).backward()
        loss_sum, hits = loss_sum + loss.detach().double() * len(y_chunk), [*hits, chunk_hits]
    sums.add(state.step, loss_sum, torch.cat(hits), len(y), batch["failures"])
    t.scaler.step(t.optimizer)
    t.scaler.update()
    state.step += 1


def chunk_loss(t: Training, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of a batch (or a chunk of one) and, per clip, whether its top class is (one of)
    the video's."""
    with autocast(t.device, t.cfg.amp):
        logits = t.net(x)
        # Multi-label data (y: 0/1 per class): a sigmoid and binary cross-entropy per class.
        loss = (F.binary_cross_entropy_with_logits(logits.float(), y.float()) if y.ndim == 2
                else F.cross_entropy(logits.float(), y, weight=t.loss_weight))
    top = logits.argmax(1, keepdim=True)
    return loss, (y.gather(1, top)[:, 0] if y.ndim == 2 else top[:, 0] == y)


def train_epoch(t: Training, stop: StopSignals, reporter: Reporter) -> EpochRecord:
    """The rest of the current epoch: one step per batch, a checkpoint every checkpoint_every
    steps, and on a stop signal a checkpoint and Interrupted."""
    state, cfg = t.state, t.cfg
    rank, world_size = world()
    t.dataset.set_epoch(state.epoch)
    order = (t.balance and t.balance.order(cfg.seed, state.epoch)) or epoch_order(len(t.dataset), cfg.seed,
                                                                                  state.epoch)
    batches = t.epoch_batches(order, rank, world_size)
    t.steps_per_epoch = t.log.epoch_steps = len(batches)  # multigrid's epochs differ
    batches = batches[state.step:]
    loader = torch.utils.data.DataLoader(t.dataset, batch_sampler=batches, num_workers=t.workers,
                                         collate_fn=collate, worker_init_fn=ignore_interrupts,
                                         pin_memory=t.device.type == "cuda")
    t.net.train()
    if t.finetune:
        t.finetune.train_modes(t.model)
    task = reporter.task(f"epoch {state.epoch + 1}/{cfg.run_epochs}", t.steps_per_epoch)
    began, clips, seconds_before = time.perf_counter(), 0, state.seconds
    sums, signum = StepSums(t.device), 0
    for batch in loader:
        lr = t.learning_rate()
        train_step(t, batch, lr, sums)
        end = state.step == t.steps_per_epoch
        save = not end and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0
        # Reduced wherever the state is read; a single process sees its own stop signal at once.
        if end or save or sums.full or t.log.due(state) or (world_size == 1 and stop.signum):
            signum = sums.reduce(state, stop.signum, t.checkpoint_path)
        t.log.step(state, lr)
        elapsed = seconds_before + time.perf_counter() - began
        clips += len(batch["label"]) * world_size  # every process's, known without asking: equal shares
        reporter.update(task, state.step, clips / max(time.perf_counter() - began, 1e-9),
                        f"loss {state.loss_sum / state.clips:.3f} lr {lr:.4f}" if state.clips else "")
        if end:
            break
        if signum or save:
            state.seconds = elapsed
            sums.gather_failures(state, t.dataset.videos.paths)
            t.save()
        if signum:
            raise Interrupted(f"interrupted at epoch {state.epoch + 1} step {state.step}; a checkpoint was "
                              f"written to {t.checkpoint_path}: run the same command to resume", signum)
    sums.gather_failures(state, t.dataset.videos.paths)
    seconds = seconds_before + time.perf_counter() - began
    reporter.done(task)
    return EpochRecord(epoch=state.epoch + 1, loss=round(state.loss_sum / state.clips, 5), lr=lr,
                       train_top1=round(100 * state.correct / state.clips, 2), seconds=round(seconds, 2),
                       clips_per_s=round(state.clips / max(seconds, 1e-9), 2))


def train(run: Path, train_videos: VideoList, model_cfg: ModelConfig, clip: ClipConfig, train_cfg: TrainConfig,
          val_videos: VideoList | None = None, arch: str = "custom", reporter: Reporter | None = None,
          finetune: FineTuning | None = None, balance: ClassBalance | None = None,
          frames: str | FrameCache | None = None) -> TrainResult:
    """Train (or resume, or just report a finished run) in the run folder `run`; `finetune`
    starts from given weights and freezes parts of the network; `frames`, the decoder to read the
    videos with (default: a FrameCache where train_cfg.frame_cache_mb allows, else its decoder)."""
    run = Path(run)
    world_size = world()[1]
    device = pick_device(train_cfg.device)
    reporter = reporter or Reporter()
    steps_per_epoch = check_run_inputs(train_videos, val_videos, model_cfg, train_cfg, world_size)
    phases = None
    if train_cfg.multigrid:
        multigrid.check_clip(clip, model_cfg.alpha)
        phases = multigrid.schedule(train_cfg.epochs)

    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = SlowFast(model_cfg).to(device)
    if finetune:
        finetune.prepare(model)
    model.train()
    if finetune:
        finetune.train_modes(model)
    check_batch_norm(model, multigrid.clip_shapes(clip, phases) if phases else [(clip.frames, clip.crop)],
                     train_cfg.batch_size // world_size)
    optimizer = finetune.make_optimizer(model, train_cfg) if finetune else make_optimizer(model, train_cfg)
    fp16 = train_cfg.amp and device.type == "cuda" and amp_dtype(device) == torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    config = run_config(arch, model_cfg, clip, train_cfg, train_videos, val_videos)
    if finetune:
        config["finetune"] = finetune.to_json()
    if balance:
        config["class_balance"] = balance.mode
    log = RunLog(run, train_cfg, steps_per_epoch)
    state = open_run(run, config, model, optimizer, scaler)
    log.start(state)
    net = model
    if world_size > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    dataset = VideoDataset(train_videos, clip, train=True, decoder=train_cfg.decoder, seed=train_cfg.seed)
    for path in state.bad_videos:  # quarantined in an earlier part of this run: never decoded again
        dataset.bad[train_videos.paths.index(Path(path))] = True
    t = Training(run, arch, clip, train_cfg, model, net, optimizer, scaler, dataset, device, state, steps_per_epoch,
                 balance, finetune, log, phases)

    if state.epoch == 0 and state.step == 0:
        reporter.print(f"training {arch} ({count_params(model):,} parameters) on {len(train_videos.paths)} videos, "
                       f"{len(train_videos.classes)} classes, {train_cfg.run_epochs} epochs of "
                       f"{'up to ' if phases else ''}{steps_per_epoch} steps, "
                       f"batch {train_cfg.batch_size} on {world_size} process(es), {device}")
        for line in finetune.lines(train_cfg) if finetune else ():
            reporter.print(line)
        if phases:
            multigrid.report_schedule(reporter, phases, clip, train_cfg.batch_size, train_cfg.base_lr,
                                      train_cfg.epochs)
    elif state.epoch < train_cfg.run_epochs:
        reporter.print(f"resuming {run} at epoch {state.epoch + 1} step {state.step}")

    with StopSignals() as stop, reporter:
        if frames is not None:
            dataset.decoder = frames
        elif state.epoch < train_cfg.run_epochs:
            dataset.decoder = cached_decoder(run_videos(train_videos, val_videos), train_cfg, reporter)
        while state.epoch < train_cfg.run_epochs:
            record = train_epoch(t, stop, reporter)
            if train_cfg.precise_bn:
                precise_bn(t)
            done = state.epoch + 1
            if val_videos is not None and (done % train_cfg.val_every == 0 or done == train_cfg.run_epochs):
                val_clip = dataclasses.replace(clip, num_clips=train_cfg.val_views[0], num_crops=train_cfg.val_views[1])
                val = evaluate(model, val_videos, val_clip, device, max(1, train_cfg.batch_size // world_size),
                               t.workers, train_cfg.amp, dataset.decoder, reporter, "validating")
                record = dataclasses.replace(record, val_top1=val.top1, val_top5=val.top5, val_excluded=val.excluded,
                                             val_map=val.map)
            t.finish_epoch(record)
            reporter.print(record.summary_line())
            if all_max(stop.signum, device):
                raise Interrupted(f"interrupted after epoch {state.epoch}; a checkpoint was written to "
                                  f"{t.checkpoint_path}: run the same command to resume", stop.signum)

    log.close()
    checksums = tuple(gather(weights_checksum(model)))
    test = None
    if val_videos is not None:
        with reporter, StopSignals(f"interrupted during the final test; the training is finished and kept in "
                                   f"{t.checkpoint_path}: run the same command to run only the test"):
            test = _final_test(t, val_videos, reporter)
    return TrainResult(str(run), arch, state.epoch, count_params(model), tuple(state.history), checksums,
                       state.bad_video_list(), test)


def precise_bn(t: Training) -> None:
    """BN statistics recomputed from this process's share of up to cfg.precise_bn training
    batches (a fresh order; at most one epoch's batches), before the epoch is validated and saved."""
    rank, world_size = world()
    batches = rank_batches(epoch_order(len(t.dataset), t.cfg.seed + 1, t.state.epoch), t.cfg.batch_size, rank,
                           world_size)[: t.cfg.precise_bn]
    loader = torch.utils.data.DataLoader(t.dataset, batch_sampler=batches, num_workers=t.workers,
                                         collate_fn=collate, worker_init_fn=ignore_interrupts)
    update_bn_stats(t.model, (normalize(b["clip"].to(t.device), t.clip.mean, t.clip.std) for b in loader))


def _final_test(t: Training, val_videos: VideoList, reporter: Reporter) -> EvalResult:
    """The full multi-view test of the finished network on the validation data, once: kept in
    the run folder so that asking again (or ablate's second pass) costs nothing."""
    path = t.run / TEST_FILE
    if path.exists():
        return EvalResult.from_json(json.loads(path.read_text()))
    cfg = t.cfg
    t.model.head_window = reference_head_window(t.model.cfg, t.clip)  # scored as `sfcli eval` scores it
    try:
        result = evaluate(t.model, val_videos, t.clip, t.device, max(1, cfg.batch_size // world()[1] // 4),
                          t.workers, cfg.amp, t.dataset.decoder, reporter, "testing")
    finally:
        t.model.head_window = None
    if is_main_process():
        write_atomic(path, json.dumps(result.to_json(), indent=2) + "\n")
    return result

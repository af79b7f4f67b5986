"""The one train and eval loop: `sfcli train`, `sfcli eval` and `sfcli ablate` all run here.

The recipe is the paper's: SGD with Nesterov momentum 0.9, weight decay 1e-4 except on batch-norm
and bias parameters, a half-period cosine learning rate updated every iteration after a linear
warm-up, the base rate scaled with the total batch (0.1 at 64). A run lives in a folder:
config.json, metrics.jsonl, bad_videos.json and checkpoint.pt, written so that a kill at any
instant loses no finished work, and so that running the same command again resumes exactly.
Under torchrun each process trains on its share of every batch (DDP); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sfcli import checkpoint as ckpt
from sfcli.data import (ClipConfig, DataError, VideoDataset, VideoList, collate, normalize, read_labels_file,
                        read_video_list)
from sfcli.model import ModelConfig, SlowFast, count_params, fuse_bn
from sfcli.presets import clip_config
from sfcli.errors import Interrupted, TrainingError

CONFIG_FILE, METRICS_FILE, BAD_VIDEOS_FILE = "config.json", "metrics.jsonl", "bad_videos.json"
WARMUP_START = 0.01 / 1.6  # the reference warms up from 0.01 towards 1.6 (batch 1024)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 16  # total over all processes
    lr: float | None = None  # None: 0.1 per 64 clips of total batch
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-4
    momentum: float = 0.9
    seed: int = 0
    amp: bool = False
    # Settings that do not change what is computed (may differ when a run resumes):
    workers: int = 2
    device: str = "auto"
    decoder: str = "auto"
    checkpoint_every: int = 0  # steps; 0: only at the end of each epoch
    val_views: str = "1x1"  # clips x crops of the per-epoch validation; the final test uses the run's views

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else 0.1 * self.batch_size / 64


RESUMABLE = ("workers", "device", "decoder", "checkpoint_every", "val_views")


# ----------------------------------------------------------------------------- processes and devices


def world() -> tuple[int, int]:
    """(rank, world size): torchrun's, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def keep_freed_memory() -> bool:
    """Have glibc's malloc serve every allocation from its heap and keep what is freed, for this
    process. By default each block above 32 MB (a 256² clip's activations are many) gets fresh
    pages from the kernel, which zeroes them on first touch, and returns them when freed: a third
    of `sfcli infer`'s time at 256² views went there (measured). The cost is that the process
    keeps its peak memory until it exits. False where the C library is not glibc."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA when present. Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if name not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device) -> None:
    """Join torchrun's process group (gloo on the CPU, NCCL on CUDA) when launched by torchrun."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def all_max(value: float, device: torch.device) -> float:
    """The largest of every process's value (the value itself in a single process)."""
    if world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_sum(values: list[float], device: torch.device) -> list[float]:
    if world()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather(obj) -> list:
    """Every process's obj, in rank order."""
    if world()[1] == 1:
        return [obj]
    out = [None] * world()[1]
    dist.all_gather_object(out, obj)
    return out


def autocast(device: torch.device, amp: bool):
    """Mixed precision on CUDA (bf16 where the GPU has it, else fp16) and on CPUs with native bf16
    (AVX512-BF16 or AMX); float32 elsewhere, since other CPUs only get slower with it."""
    if amp and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())):
        return torch.autocast(device.type, dtype=amp_dtype(device))
    return contextlib.nullcontext()


def cpu_has_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


# ----------------------------------------------------------------------------- the recipe


def learning_rate(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Half-period cosine over the whole run; during warm-up, a straight line from
    base_lr * WARMUP_START to where the cosine is at the warm-up's end."""
    cosine = lambda s: base_lr * 0.5 * (math.cos(math.pi * s / total_steps) + 1)  # noqa: E731
    if step < warmup_steps:
        start, end = base_lr * WARMUP_START, cosine(warmup_steps)
        return start + (end - start) * step / warmup_steps
    return cosine(step)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum; no weight decay on batch-norm weights and biases (every
    parameter with fewer than two dimensions)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
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


# ----------------------------------------------------------------------------- progress and output


def make_console(stderr: bool = False) -> Console:
    """A rich console; piped output (logs, CI, tests) gets wide lines instead of 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 160)


class Reporter:
    """Progress bars and messages, on rank 0 only. Bars are drawn on a terminal; elsewhere (logs,
    CI) each epoch still ends in one line."""

    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled and world()[0] == 0
        self.console = console or make_console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.1f} clips/s"), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=self.console, transient=True, disable=not (self.enabled and self.console.is_terminal),
        )

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def task(self, description: str, total: int):
        return self.progress.add_task(description, total=total, rate=0.0, info="")

    def update(self, task, completed: int, rate: float, info: str = ""):
        self.progress.update(task, completed=completed, rate=rate, info=info)

    def done(self, task):
        self.progress.remove_task(task)

    def print(self, *args, **kwargs):
        if self.enabled:
            self.console.print(*args, **kwargs)


# ----------------------------------------------------------------------------- evaluation


def view_chunk(device: torch.device, views: int) -> int:
    """Views per forward pass, split into equal passes so that the network meets one batch shape
    (oneDNN and cuDNN set up kernels per shape): at most 6 on the CPU (passes of 2 to 6 views ran
    within 4% of each other at 256², 8 slower; measured), up to 32 on a GPU."""
    passes = math.ceil(views / (32 if device.type == "cuda" else 6))
    return math.ceil(views / passes)


@torch.inference_mode()
def view_probabilities(model, views: torch.Tensor, device: torch.device, amp: bool = False,
                       chunk: int | None = None) -> torch.Tensor:
    """Softmax scores (N, classes), float32 on the CPU, of N uint8 views (N, C, T, H, W), run
    through the network `chunk` views at a time."""
    chunk = chunk or view_chunk(device, len(views))
    out = []
    for part in views.split(chunk):
        with autocast(device, amp):
            logits = model(normalize(part.to(device, non_blocking=True)))
        out.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(out)


def parse_views(text: str) -> tuple[int, int]:
    """'10x3' to (clips, crops)."""
    try:
        clips, crops = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise TrainingError(f"views are CLIPSxCROPS, e.g. 10x3, got {text!r}") from None
    if clips < 1 or crops not in (1, 2, 3):
        raise TrainingError(f"views need at least one clip and 1 to 3 crops, got {text!r}")
    return clips, crops


def evaluate(model: SlowFast, videos: VideoList, clip: ClipConfig, device: torch.device, batch_size: int = 4,
             workers: int = 2, amp: bool = False, decoder: str = "auto", reporter: Reporter | None = None,
             description: str = "eval") -> dict:
    """The paper's test: every video's views (clip.num_clips uniform clips x clip.num_crops crops)
    through the network, softmax scores summed per video, top-1/top-5 and per-class accuracy.
    Videos that fail to decode are excluded and listed. Under torchrun each process scores every
    world-th video and the results are gathered: every video counted exactly once."""
    rank, world_size = world()
    model.eval()
    dataset = VideoDataset(videos, clip, train=False, decoder=decoder)
    mine = list(range(rank, len(dataset), world_size))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=mine, num_workers=workers,
                                         collate_fn=collate, worker_init_fn=_ignore_interrupts)
    scores, labels, indices, failures = [], [], [], []
    reporter = reporter or Reporter(enabled=False)
    task, began, seen = reporter.task(description, len(dataset)), time.perf_counter(), 0
    for batch in loader:
        failures += batch["failures"]
        if batch["clip"] is not None:
            b, v = batch["clip"].shape[:2]
            probs = view_probabilities(model, batch["clip"].flatten(0, 1), device, amp)
            scores.append(probs.reshape(b, v, -1).sum(1))
            labels.append(batch["label"])
            indices.append(batch["index"])
        seen += len(batch["index"]) + sum(1 for f in batch["failures"])
        elapsed = time.perf_counter() - began
        reporter.update(task, min(seen * world_size, len(dataset)), seen * clip.views * world_size / max(elapsed, 1e-9))
    reporter.done(task)
    num_classes = model.cfg.num_classes
    local = (torch.cat(scores) if scores else torch.zeros(0, num_classes),
             torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long),
             torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long), failures)
    parts = gather(local)
    scores = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    failures = sorted((i, reason) for p in parts for i, reason in p[3])
    result = accuracy(scores, labels, videos.classes)
    result.update(views=f"{clip.num_clips}x{clip.num_crops}", videos=len(dataset), excluded=len(failures),
                  excluded_videos=[{"path": str(videos.paths[i]), "reason": reason} for i, reason in failures],
                  seconds=round(time.perf_counter() - began, 2))
    return result


@dataclass
class Tester:
    """A checkpoint ready to score videos: its inference network, class names, view settings."""

    model: SlowFast
    classes: list[str]
    clip: ClipConfig
    device: torch.device
    info: dict


def load_tester(checkpoint, arch: str | None = None, labels=None, views: str = "10x3",
                device: str = "auto") -> Tester:
    """Any checkpoint format (a run folder, an sfcli file, PySlowFast or PyTorchVideo weights);
    class names from `labels`, else the checkpoint's, else Kinetics-400's for 400 outputs; the
    run's own view settings (the preset's for foreign weights) with `views` clips x crops."""
    dev = pick_device(device)
    model, info = ckpt.load_model(checkpoint, arch)
    classes = info["classes"]
    if labels is not None:
        classes = read_labels_file(labels)
        if len(classes) != model.cfg.num_classes:
            raise DataError(f"{labels} names {len(classes)} classes but the network has "
                            f"{model.cfg.num_classes} outputs")
    num_clips, num_crops = parse_views(views)
    clip = ClipConfig(**info["clip"]) if info["clip"] else clip_config(info["config"], info["arch"])
    clip = dataclasses.replace(clip, num_clips=num_clips, num_crops=num_crops)
    # The inference copy: BN folded into the convs, conv + ReLU (+ residual add) in one call.
    return Tester(fuse_bn(model.to(dev)), classes, clip, dev, info)


def evaluate_checkpoint(checkpoint, data, views: str = "10x3", batch_size: int = 4, workers: int = 2,
                        device: str = "auto", decoder: str = "auto", prefix=None, labels=None,
                        skip_missing: bool = False, arch: str | None = None, reporter: Reporter | None = None) -> dict:
    """`sfcli eval`: a checkpoint tested on a dataset with the paper's multi-view protocol."""
    init_distributed(pick_device(device))
    tester = load_tester(checkpoint, arch, labels, views, device)
    videos = read_video_list(data, prefix, classes=tester.classes, skip_missing=skip_missing)
    reporter = reporter or Reporter()
    with reporter:
        result = evaluate(tester.model, videos, tester.clip, tester.device, batch_size, workers, decoder=decoder,
                          reporter=reporter)
    return {"checkpoint": tester.info["path"], "arch": tester.info["arch"], "data": str(data), **result}


def accuracy(scores: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Top-1, top-5 (as %) over the scored videos, and top-1 per class."""
    n = len(labels)
    k = min(5, scores.shape[1])
    top = scores.topk(k, dim=1).indices if n else torch.zeros(0, k, dtype=torch.long)
    hit1 = top[:, 0] == labels
    hit5 = (top == labels[:, None]).any(dim=1)
    per_class = []
    for c, name in enumerate(classes):
        mask = labels == c
        count = int(mask.sum())
        per_class.append({"class": name, "videos": count,
                          "top1": round(100 * float(hit1[mask].float().mean()), 2) if count else None})
    pct = lambda hits: round(100 * float(hits.float().mean()), 2) if n else 0.0  # noqa: E731
    return {"top1": pct(hit1), "top5": pct(hit5), "scored": n, "per_class": per_class}


# ----------------------------------------------------------------------------- the run folder


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_config(arch: str, model_cfg: ModelConfig, clip: ClipConfig, train_cfg: TrainConfig,
               train_videos: VideoList, val_videos: VideoList | None) -> dict:
    """Everything needed to rebuild the model and the data pipeline of a run."""
    return {
        "arch": arch,
        "model": model_cfg.to_dict(),
        "clip": dataclasses.asdict(clip),
        "train": dataclasses.asdict(train_cfg),
        "data": {"train": str(train_videos.source), "format": train_videos.kind, "videos": len(train_videos.paths),
                 "val": str(val_videos.source) if val_videos else None,
                 "val_videos": len(val_videos.paths) if val_videos else 0},
        "classes": list(train_videos.classes),
    }


def _flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_resumable(run: Path, config: dict) -> None:
    """A run folder resumes only under the settings it was started with (those that change what
    is computed; workers, device and the like may differ)."""
    saved_path = run / CONFIG_FILE
    try:
        saved = _flatten(json.loads(saved_path.read_text()))
    except (OSError, ValueError):
        raise TrainingError(f"{saved_path} cannot be read; pass a new --out or delete the run folder") from None
    now = _flatten(config)
    ignored = {f"train.{k}" for k in RESUMABLE}
    diffs = sorted(k for k in set(saved) | set(now) if k not in ignored and saved.get(k) != now.get(k))
    if diffs:
        raise TrainingError(f"{run} holds a run with other settings ({', '.join(diffs[:4])} differ); run the same "
                            f"command to resume it, or pass a new --out")


# ----------------------------------------------------------------------------- training


@dataclass
class RunState:
    """Where a run is: restored from its checkpoint, saved with it."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in the current epoch
    loss_sum: float = 0.0  # of the current epoch so far, over all processes
    correct: float = 0.0
    clips: float = 0.0
    seconds: float = 0.0
    history: list = dataclasses.field(default_factory=list)  # one dict per finished epoch
    bad_videos: dict = dataclasses.field(default_factory=dict)  # path -> reason


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self):
        self.signum = 0

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def _ignore_interrupts(_worker_id: int) -> None:
    # Ctrl-C reaches the loader's workers too; only the main process decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train(run: Path, train_videos: VideoList, model_cfg: ModelConfig, clip: ClipConfig, train_cfg: TrainConfig,
          val_videos: VideoList | None = None, arch: str = "custom", reporter: Reporter | None = None) -> dict:
    """Train (or resume, or just report a finished run) in the run folder `run`; returns the
    summary: final metrics, the last validation and test results, the bad videos."""
    run = Path(run)
    rank, world_size = world()
    device = pick_device(train_cfg.device)
    reporter = reporter or Reporter()
    if model_cfg.num_classes != len(train_videos.classes):
        raise TrainingError(f"the network has {model_cfg.num_classes} outputs but the data has "
                            f"{len(train_videos.classes)} classes; leave out --num-classes or fix the labels")
    if train_cfg.batch_size % world_size:
        raise TrainingError(f"--batch-size {train_cfg.batch_size} does not split over {world_size} processes")
    steps_per_epoch = len(train_videos.paths) // train_cfg.batch_size
    if steps_per_epoch == 0:
        raise TrainingError(f"{train_videos.source} has {len(train_videos.paths)} videos, fewer than one batch "
                            f"of {train_cfg.batch_size}; lower --batch-size")
    if train_cfg.epochs < 1:
        raise TrainingError("--epochs must be at least 1")
    if val_videos is not None and list(val_videos.classes) != list(train_videos.classes):
        raise TrainingError("the validation data's classes differ from the training data's")
    val_clips, val_crops = parse_views(train_cfg.val_views)

    config = run_config(arch, model_cfg, clip, train_cfg, train_videos, val_videos)
    checkpoint_path = run / ckpt.RUN_CHECKPOINT
    torch.manual_seed(train_cfg.seed)  # the initial weights
    model = SlowFast(model_cfg).to(device)
    optimizer = make_optimizer(model, train_cfg)
    fp16 = train_cfg.amp and device.type == "cuda" and amp_dtype(device) == torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    state = RunState()
    if checkpoint_path.exists():
        check_resumable(run, config)
        state = _restore(checkpoint_path, model, optimizer, scaler)
    elif rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        _atomic_write(run / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    if rank == 0:  # the metrics file holds exactly the epochs the checkpoint has finished
        _atomic_write(run / METRICS_FILE, "".join(json.dumps(h) + "\n" for h in state.history))

    total_steps = train_cfg.epochs * steps_per_epoch
    warmup_steps = min(round(train_cfg.warmup_epochs * steps_per_epoch), total_steps - 1)
    net = model
    if world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    dataset = VideoDataset(train_videos, clip, train=True, decoder=train_cfg.decoder, seed=train_cfg.seed)
    for path in state.bad_videos:  # quarantined in an earlier part of this run: never decoded again
        dataset.bad[train_videos.paths.index(Path(path))] = True

    def save():
        if rank == 0:
            payload = ckpt.make_payload(model, train_videos.classes, arch, clip=dataclasses.asdict(clip),
                                        optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                                        run_state=dataclasses.asdict(state), epoch=state.epoch,
                                        train_config=dataclasses.asdict(train_cfg))
            ckpt.save_checkpoint(checkpoint_path, payload)
            _atomic_write(run / BAD_VIDEOS_FILE, json.dumps(
                [{"path": p, "reason": r} for p, r in state.bad_videos.items()], indent=2) + "\n")

    if state.epoch == 0 and state.step == 0:
        reporter.print(f"training {arch} ({count_params(model):,} parameters) on {len(train_videos.paths)} videos, "
                       f"{len(train_videos.classes)} classes, {train_cfg.epochs} epochs of {steps_per_epoch} steps, "
                       f"batch {train_cfg.batch_size} on {world_size} process(es), {device}")
    elif state.epoch < train_cfg.epochs:
        reporter.print(f"resuming {run} at epoch {state.epoch + 1} step {state.step}")

    with _StopSignals() as stop, reporter:
        while state.epoch < train_cfg.epochs:
            dataset.set_epoch(state.epoch)
            batches = rank_batches(epoch_order(len(dataset), train_cfg.seed, state.epoch), train_cfg.batch_size,
                                   rank, world_size)[state.step:]
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=batches, num_workers=train_cfg.workers, collate_fn=collate,
                worker_init_fn=_ignore_interrupts, pin_memory=device.type == "cuda")
            net.train()
            task = reporter.task(f"epoch {state.epoch + 1}/{train_cfg.epochs}", steps_per_epoch)
            began, clips_before, seconds_before = time.perf_counter(), state.clips, state.seconds
            for batch in loader:
                global_step = state.epoch * steps_per_epoch + state.step
                lr = learning_rate(global_step, total_steps, warmup_steps, train_cfg.base_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                torch.manual_seed(step_seed(train_cfg.seed, state.epoch, state.step))
                x = normalize(batch["clip"].to(device, non_blocking=True))
                y = batch["label"].to(device, non_blocking=True)
                with autocast(device, train_cfg.amp):
                    logits = net(x)
                    loss = F.cross_entropy(logits.float(), y)
                loss_value = float(loss.detach())
                loss_sum, correct, count, bad = all_sum(
                    [loss_value * len(y), float((logits.argmax(1) == y).sum()), len(y),
                     0.0 if math.isfinite(loss_value) else 1.0], device)
                if bad:
                    raise TrainingError(
                        f"the loss became {'nan' if math.isnan(loss_value) else 'infinite'} at epoch "
                        f"{state.epoch + 1} step {state.step + 1}; the run stopped, and its last good checkpoint is "
                        f"kept in {checkpoint_path} (try a lower --lr)")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                for index, reason in (f for part in gather(batch["failures"]) for f in part):
                    state.bad_videos.setdefault(str(train_videos.paths[index]), reason)
                state.step += 1
                state.loss_sum += loss_sum
                state.correct += correct
                state.clips += count
                elapsed = seconds_before + time.perf_counter() - began
                reporter.update(task, state.step, (state.clips - clips_before) / max(time.perf_counter() - began, 1e-9),
                                f"loss {state.loss_sum / state.clips:.3f} lr {lr:.4f}")
                if state.step == steps_per_epoch:
                    break
                signum = int(all_max(stop.signum, device))
                if signum:
                    state.seconds = elapsed
                    save()
                    raise Interrupted(f"interrupted at epoch {state.epoch + 1} step {state.step}; a checkpoint was "
                                      f"written to {checkpoint_path}: run the same command to resume", signum)
                if train_cfg.checkpoint_every and state.step % train_cfg.checkpoint_every == 0:
                    state.seconds = elapsed
                    save()
            seconds = seconds_before + time.perf_counter() - began
            reporter.done(task)
            record = {"epoch": state.epoch + 1, "loss": round(state.loss_sum / state.clips, 5), "lr": lr,
                      "train_top1": round(100 * state.correct / state.clips, 2), "seconds": round(seconds, 2),
                      "clips_per_s": round(state.clips / max(seconds, 1e-9), 2)}
            if val_videos is not None:
                val_clip = dataclasses.replace(clip, num_clips=val_clips, num_crops=val_crops)
                val = evaluate(model, val_videos, val_clip, device, max(1, train_cfg.batch_size // world_size),
                               train_cfg.workers, train_cfg.amp, train_cfg.decoder, reporter, "validating")
                record.update(val_top1=val["top1"], val_top5=val["top5"], val_excluded=val["excluded"])
            state.history.append(record)
            state.epoch, state.step = state.epoch + 1, 0
            state.loss_sum = state.correct = state.clips = state.seconds = 0.0
            save()
            if rank == 0:
                with open(run / METRICS_FILE, "a") as f:
                    f.write(json.dumps(record) + "\n")
            reporter.print(_epoch_line(record))
            if all_max(stop.signum, device):
                raise Interrupted(f"interrupted after epoch {state.epoch}; a checkpoint was written to "
                                  f"{checkpoint_path}: run the same command to resume", stop.signum)

    summary = {"run": str(run), "arch": arch, "epochs": state.epoch, "params": count_params(model),
               "history": state.history, "rank_checksums": gather(weights_checksum(model)), "bad_videos": [{"path": p, "reason": r} for p, r in state.bad_videos.items()]}
    if val_videos is not None:
        with reporter:
            summary["test"] = _final_test(run, model, val_videos, clip, device, train_cfg, reporter)
    return summary


def weights_checksum(model: torch.nn.Module) -> str:
    """A digest of every learned weight: equal across processes when DDP kept them in sync (batch
    norm's running statistics are each process's own, as in the reference)."""
    digest = hashlib.sha256()
    for tensor in model.parameters():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _final_test(run: Path, model, val_videos, clip, device, train_cfg, reporter) -> dict:
    """The full multi-view test of the finished network on the validation data, once: kept in
    the run folder so that asking again (or ablate's second pass) costs nothing."""
    path = run / "test.json"
    if path.exists():
        return json.loads(path.read_text())
    result = evaluate(model, val_videos, clip, device, max(1, train_cfg.batch_size // world()[1] // 4),
                      train_cfg.workers, train_cfg.amp, train_cfg.decoder, reporter, "testing")
    if world()[0] == 0:
        _atomic_write(path, json.dumps(result, indent=2) + "\n")
    return result


def _epoch_line(record: dict) -> str:
    line = (f"epoch {record['epoch']}: loss {record['loss']:.4f}, train top-1 {record['train_top1']:.1f}%, "
            f"{record['clips_per_s']:.1f} clips/s, {record['seconds']:.0f} s")
    if "val_top1" in record:
        line += f", val top-1 {record['val_top1']:.1f}% top-5 {record['val_top5']:.1f}%"
    return line


def _restore(path: Path, model, optimizer, scaler) -> RunState:
    checkpoint = ckpt.load_checkpoint(path)
    try:
        ckpt.load_weights(model, checkpoint["model"], source=str(path))
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        return RunState(**checkpoint["run_state"])
    except (KeyError, TypeError, ValueError) as err:
        raise TrainingError(f"{path} is not a resumable sfcli training checkpoint ({err})") from None

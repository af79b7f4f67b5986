"""A run folder (config.json, metrics.jsonl, bad_videos.json, test.json, checkpoint.pt), written
so that a kill at any instant loses no finished work, and the state a run resumes from."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from sfcli.checkpoint import RUN_CHECKPOINT, load_weights
from sfcli.data import ClipConfig
from sfcli.distributed import is_main_process
from sfcli.errors import Reason, TrainingError, WriteError
from sfcli.evaluation import BadVideo, EvalResult
from sfcli.files import load_checkpoint, save_checkpoint, write_atomic
from sfcli.model_config import ModelConfig
from sfcli.recipe import RESUMABLE, TrainConfig
from sfcli.runlock import lock_run
from sfcli.videolist import VideoList

CONFIG_FILE, METRICS_FILE, BAD_VIDEOS_FILE, TEST_FILE = "config.json", "metrics.jsonl", "bad_videos.json", "test.json"
BEST_CHECKPOINT = "best.pt"  # the weights of the epoch with the best validation so far


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch, as metrics.jsonl holds it; the val_ fields only when it was validated."""

    epoch: int
    loss: float
    lr: float
    train_top1: float
    seconds: float
    clips_per_s: float
    val_top1: float | None = None
    val_top5: float | None = None
    val_excluded: int | None = None
    val_map: float | None = None  # multi-label data

    def summary_line(self) -> str:
        """The line `sfcli train` prints after the epoch."""
        line = (f"epoch {self.epoch}: loss {self.loss:.4f}, train top-1 {self.train_top1:.1f}%, "
                f"{self.clips_per_s:.1f} clips/s, {self.seconds:.0f} s")
        if self.val_top1 is not None:
            line += f", val top-1 {self.val_top1:.1f}% top-5 {self.val_top5:.1f}%"
        if self.val_map is not None:
            line += f", val mAP {self.val_map:.1f}%"
        return line

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class StepRecord:
    """The training loss averaged over the steps since the last record, and the learning rate,
    every --log-every steps; in metrics.jsonl as {"kind": "step", ...} between the epoch lines."""

    epoch: int  # 1-based, as EpochRecord's
    step: int  # steps finished in the epoch
    epochs: float  # epochs done, with the fraction: the x of a curve
    loss: float
    lr: float

    def to_json(self) -> dict:
        return {"kind": "step", **dataclasses.asdict(self)}


@dataclass
class RunState:
    """Where a run is: restored from its checkpoint, saved with it."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in the current epoch
    loss_sum: float = 0.0  # of the current epoch so far, over all processes
    correct: float = 0.0
    clips: float = 0.0
    seconds: float = 0.0
    history: list[EpochRecord] = dataclasses.field(default_factory=list)  # one per finished epoch
    bad_videos: dict[str, str] = dataclasses.field(default_factory=dict)  # path -> reason (a Reason)

    def bad_video_list(self) -> tuple[BadVideo, ...]:
        return tuple(BadVideo.of(p, r) for p, r in self.bad_videos.items())

    def to_json(self) -> dict:
        """Plain types only (a checkpoint loads with weights_only): each Reason as its text, and
        its decoders' messages under bad_video_details."""
        bad = self.bad_video_list()
        return {**dataclasses.asdict(self), "history": [h.to_json() for h in self.history],
                "bad_videos": {b.path: b.reason for b in bad}, "bad_video_details": {b.path: b.details for b in bad}}

    @classmethod
    def from_json(cls, d: dict) -> RunState:
        d = dict(d)
        details = d.pop("bad_video_details", {})  # absent from checkpoints of earlier versions
        return cls(**{**d, "history": [EpochRecord(**h) for h in d["history"]],
                      "bad_videos": {p: Reason(r, details.get(p, "")) for p, r in d["bad_videos"].items()}})


@dataclass(frozen=True)
class TrainResult:
    """A finished run: its epochs, the final test on the validation data (if any), the videos
    quarantined, and each process's weights checksum (equal when DDP kept them in sync)."""

    run: str
    arch: str
    epochs: int
    params: int
    history: tuple[EpochRecord, ...]
    rank_checksums: tuple[str, ...]
    bad_videos: tuple[BadVideo, ...]
    test: EvalResult | None = None

    def to_json(self) -> dict:
        out = {"run": self.run, "arch": self.arch, "epochs": self.epochs, "params": self.params,
               "history": [h.to_json() for h in self.history], "rank_checksums": list(self.rank_checksums),
               "bad_videos": [b.to_json() for b in self.bad_videos]}
        if self.test is not None:
            out["test"] = self.test.to_json()
        return out


@dataclass(frozen=True)
class RunSummary:
    """What a run folder says of itself: its network, classes, the epochs done and their metrics,
    the final test once there is one."""

    run: str
    arch: str
    classes: tuple[str, ...]
    epochs: int  # asked for
    history: tuple[EpochRecord, ...]
    test: EvalResult | None
    steps: tuple[StepRecord, ...] = ()

    @property
    def epochs_done(self) -> int:
        return len(self.history)


def read_run(run) -> RunSummary:
    """Read a run folder's config.json, metrics.jsonl and test.json (as `sfcli train` writes them)."""
    run = Path(run)
    try:
        config = json.loads((run / CONFIG_FILE).read_text())
        lines = (run / METRICS_FILE).read_text().splitlines() if (run / METRICS_FILE).exists() else []
        records = [json.loads(line) for line in lines if line.strip()]
        history = tuple(EpochRecord(**r) for r in records if "kind" not in r)
        steps = tuple(StepRecord(**{k: v for k, v in r.items() if k != "kind"}) for r in records if "kind" in r)
        test = EvalResult.from_json(json.loads((run / TEST_FILE).read_text())) if (run / TEST_FILE).exists() else None
        return RunSummary(str(run), config["arch"], tuple(config["classes"]), config["train"]["epochs"], history, test,
                          steps)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise TrainingError(f"{run} is not a readable sfcli run folder ({err})") from None


def check_run_inputs(train_videos: VideoList, val_videos: VideoList | None, model_cfg: ModelConfig,
                     train_cfg: TrainConfig, world_size: int) -> int:
    """Refuse a run that cannot start, before anything is written; returns the steps per epoch."""
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
    if val_videos is not None and val_videos.multi_label != train_videos.multi_label:
        raise TrainingError("the training and validation data must both be multi-label lists, or neither")
    return steps_per_epoch


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


def open_run(run: Path, config: dict, model, optimizer, scaler) -> RunState:
    """Resume the run in `run` (its checkpoint restored into model, optimizer and scaler) or start
    one there; on the main process, metrics.jsonl then holds exactly the epochs the checkpoint
    has finished. The main process holds the folder's lock from here on."""
    if is_main_process():
        lock_run(run)
    checkpoint_path = run / RUN_CHECKPOINT
    state = RunState()
    if checkpoint_path.exists():
        check_resumable(run, config)
        state = restore(checkpoint_path, model, optimizer, scaler)
    elif is_main_process():
        run.mkdir(parents=True, exist_ok=True)
        write_atomic(run / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    if is_main_process():
        write_atomic(run / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in _records_until(run, state)))
    return state


def _records_until(run: Path, state: RunState) -> list[dict]:
    """metrics.jsonl's lines as far as the checkpoint `state` goes: its epochs, and the step
    records of those and of its part of the current epoch."""
    path = run / METRICS_FILE
    steps = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except ValueError:  # the last line, half-written when the run was killed
            continue
        if record.get("kind") == "step" and (record["epoch"], record["step"]) <= (state.epoch + 1, state.step):
            steps.append(record)
    epochs = [h.to_json() for h in state.history]
    return sorted(steps + epochs, key=lambda r: (r["epoch"], r.get("step", math.inf)))


def restore(path: Path, model, optimizer, scaler) -> RunState:
    """Load a run's checkpoint into model, optimizer and scaler; returns where the run was."""
    checkpoint = load_checkpoint(path)
    try:
        load_weights(model, checkpoint["model"], source=str(path))
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        return RunState.from_json(checkpoint["run_state"])
    except (KeyError, TypeError, ValueError) as err:
        raise TrainingError(f"{path} is not a resumable sfcli training checkpoint ({err})") from None


def save_run(run: Path, payload: dict, state: RunState) -> None:
    """The checkpoint (`payload` and where the run is) and the list of quarantined videos."""
    path = run / RUN_CHECKPOINT
    try:
        save_checkpoint(path, {**payload, "run_state": state.to_json(), "epoch": state.epoch})
    except WriteError as err:
        if err.kept is None or not path.exists():
            raise
        before = load_checkpoint(path)["run_state"]
        raise WriteError(err.reason, f"the previous checkpoint (epoch {before['epoch'] + 1}, step {before['step']})") \
            from None
    write_atomic(run / BAD_VIDEOS_FILE, json.dumps([b.to_json() for b in state.bad_video_list()], indent=2) + "\n")


def append_metrics(run: Path, record: EpochRecord | StepRecord) -> None:
    with open(run / METRICS_FILE, "a") as f:
        f.write(json.dumps(record.to_json()) + "\n")


def weights_checksum(model: torch.nn.Module) -> str:
    """A digest of every learned weight: equal across processes when DDP kept them in sync (batch
    norm's running statistics are each process's own, as in the reference)."""
    digest = hashlib.sha256()
    for tensor in model.parameters():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]

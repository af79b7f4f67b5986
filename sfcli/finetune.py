"""Fine-tuning: a run that starts from weights users have (`--init`) instead of from scratch, and
the controls over what it trains (frozen stages, frozen batch norm, the classifier's own rate).

`sfcli train`'s network is the weights' own; only the classifier is new when the data's classes
do not fit it. An ablation's variants change the network, so each loads the tensors whose name
and shape fit it and keeps its own initialisation for the rest (`SharedInit`). The run folder
records where the weights came from (path, size, time, sha256): the same command resumes from
the run's checkpoint without reading them, and refuses if they changed."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from sfcli.checkpoint import RUN_CHECKPOINT, load_weights, read_checkpoint, resolve_checkpoint
from sfcli.errors import TrainingError
from sfcli.hub import sha256_of
from sfcli.model import SlowFast
from sfcli.model_config import ModelConfig
from sfcli.recipe import TrainConfig, make_optimizer

# The --init defaults, where the scratch recipe has 0.1 per 64 clips and a 1-epoch warm-up: the
# weights are already good, so a tenth of the rate keeps them, and a short warm-up is enough
# for the new classifier's first steps.
FINETUNE_LR = 0.01  # per 64 clips of total batch
FINETUNE_WARMUP_EPOCHS = 0.2
STAGES = ("stem", "res2", "res3", "res4", "res5")
# Settings the weights do not fix: the clip's frames and stride, dropout, the initialisation.
FREE_FIELDS = ("frames", "tau", "alpha", "dropout", "zero_init_residual", "num_classes")
HEAD = "fc"


def finetune_defaults(lr: float | None, warmup_epochs: float | None, batch_size: int) -> tuple[float, float]:
    """(base lr, warm-up epochs) of a fine-tuning run: the given ones, else FINETUNE_*."""
    return (lr if lr is not None else FINETUNE_LR * batch_size / 64,
            warmup_epochs if warmup_epochs is not None else FINETUNE_WARMUP_EPOCHS)


@dataclass(frozen=True)
class InitSource:
    """The weights a run started from, as its config.json records them."""

    path: str
    sha256: str
    bytes: int
    mtime_ns: int
    format: str  # the layout they were read in
    arch: str
    head: str  # "kept", "replaced: N -> M classes", or (SharedInit) "re-initialised"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FineTuning:
    """What `train` needs to fine-tune: the network, the weights to start from (None when the run
    resumes: its checkpoint has them) and the controls."""

    arch: str | None  # the weights' network; None without them
    config: ModelConfig | None
    source: InitSource | None
    weights: dict | None = None
    freeze: str | None = None  # the last stage frozen, one of STAGES
    freeze_bn: bool = False
    head_lr_mult: float = 1.0
    fitted: str | None = None  # SharedInit: what `weights` (those that fit) leave fresh; None: all must load

    def to_json(self) -> dict:
        return {"init": self.source.to_json() if self.source else None, "freeze": self.freeze,
                "freeze_bn": self.freeze_bn, "head_lr_mult": self.head_lr_mult}

    def lines(self, cfg: TrainConfig) -> list[str]:
        """What the run says at its start."""
        out = []
        if self.source is not None:
            out.append(f"fine-tuning from {self.source.path} ({self.source.format} weights of {self.arch}, "
                       f"sha256 {self.source.sha256[:12]}): base lr {cfg.base_lr:g}, "
                       f"warm-up {cfg.warmup_epochs:g} epochs")
            if self.fitted is not None:
                out.append(self.fitted)
            elif self.source.head != "kept":
                out.append(f"classifier {HEAD} {self.source.head} (a fresh one for the data's classes)")
        if self.freeze or self.freeze_bn or self.head_lr_mult != 1:
            frozen = f"frozen up to {self.freeze}" if self.freeze else "nothing frozen"
            out.append(f"{frozen}, batch norm {'frozen' if self.freeze_bn else 'trained'}, "
                       f"classifier rate x{self.head_lr_mult:g}")
        return out

    def prepare(self, model: SlowFast) -> None:
        """Load the starting weights (the fresh tensors kept where the weights have none that fit:
        the replaced classifier, or whatever an ablation's variant changed) and freeze."""
        if self.weights is not None:
            weights = self.weights
            if self.fitted is not None:
                weights = {**model.state_dict(), **weights}
            elif self.source.head != "kept":
                weights = {**weights, **{k: v for k, v in model.state_dict().items() if k.startswith(HEAD + ".")}}
            load_weights(model, weights, source=self.source.path)
        for name, p in model.named_parameters():
            if self._frozen(name) or (self.freeze_bn and _is_bn_param(model, name)):
                p.requires_grad_(False)

    def train_modes(self, model: SlowFast) -> None:
        """After model.train(): batch norm of frozen stages (all of it with freeze_bn) in eval
        mode, so that its running statistics stay as they are."""
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and (self.freeze_bn or self._frozen(name)):
                m.eval()

    def make_optimizer(self, model: SlowFast, cfg: TrainConfig) -> torch.optim.Optimizer:
        """The recipe's optimizer over the trainable parameters, the classifier's in groups of
        their own whose `lr_mult` the train step applies."""
        recipe = make_optimizer(model, cfg)
        head = {id(p) for p in getattr(model, HEAD).parameters()}
        groups = []
        for group in recipe.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            for is_head in (False, True):
                params = [p for p in group["params"] if p.requires_grad and (id(p) in head) == is_head]
                if params:
                    groups.append({**settings, "params": params, "lr_mult": self.head_lr_mult if is_head else 1.0})
        return type(recipe)(groups, **recipe.defaults)

    def _frozen(self, name: str) -> bool:
        """Whether parameter or module `name` lies in a stage up to self.freeze: the stems and the
        lateral after them count as the stem, lateral l as res(l+1), the classifier never."""
        if self.freeze is None:
            return False
        stage = _stage(name)
        return stage is not None and stage <= STAGES.index(self.freeze)


def _stage(name: str) -> int | None:
    """The index in STAGES of parameter or module `name`: the stems and the lateral after them
    count as the stem, lateral l as res(l+1); None for the classifier."""
    parts = name.split(".")
    if parts[0] in ("slow", "fast") and len(parts) > 2:
        return 0 if parts[1] == "stem" else int(parts[2]) + 1
    if parts[0] == "laterals":
        return int(parts[1])
    return None


def _group(name: str) -> str:
    """The part of the network a tensor belongs to, as a fit's line names it: "slow res3",
    "lateral after res2", "fc"."""
    where, stage = name.split(".")[0], _stage(name)
    if stage is None:
        return where
    return f"lateral after {STAGES[stage]}" if where == "laterals" else f"{where} {STAGES[stage]}"


def _is_bn_param(model: SlowFast, name: str) -> bool:
    owner = model.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(owner, torch.nn.modules.batchnorm._BatchNorm)


def prepare_init(path, run, num_classes: int, arch: str | None = None, explicit: dict | None = None,
                 classes=None, **controls) -> FineTuning:
    """The fine-tuning of run folder `run` from the weights at `path` for data of `num_classes`
    (named `classes`, where given: weights that name other classes get a fresh classifier too).

    `arch` (else the weights' own) and `explicit` (model settings the user gave, parsed) must
    agree with the weights, except the FREE_FIELDS, which apply on top. A run that already has a
    checkpoint from the same path resumes without reading the weights; if the file changed
    since (its sha256 differs), the run is refused."""
    path, run = str(path), Path(run)
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None and k != "num_classes"}
    resumed = _recorded(run, path)
    if resumed is not None:
        source, saved_arch, config = resumed
        _check_unchanged(source)
        _check_options(config, explicit, path)
        return FineTuning(saved_arch, config, source, None, **controls)
    weights, info = read_checkpoint(path, arch)
    _check_options(info.config, explicit, path)
    free = {k: v for k, v in explicit.items() if k in FREE_FIELDS}
    config = info.config.replace(**free, num_classes=num_classes)
    head = _head_change(weights, info, num_classes, classes)
    if head != "kept":
        weights = _without_head(weights)
    return FineTuning(info.arch, config, _source(path, info, head), weights, **controls)


def _head_change(weights: dict, info, num_classes: int, classes) -> str:
    """What becomes of the weights' classifier: "kept" where it is the data's, else why it is
    replaced (its outputs differ in number, or, in weights that name their classes, in names)."""
    if HEAD + ".weight" not in weights or weights[HEAD + ".weight"].shape[0] != num_classes:
        return f"replaced: {info.config.num_classes} -> {num_classes} classes"
    if classes is not None and info.classes_source == "checkpoint" and list(info.classes) != list(classes):
        return f"replaced: {num_classes} classes of other names"
    return "kept"


def _without_head(weights: dict) -> dict:
    return {k: v for k, v in weights.items() if not k.startswith(HEAD + ".")}


@dataclass(frozen=True)
class SharedInit:
    """Weights that runs of different networks start from (an ablation's variants): read once;
    each run loads the tensors whose name and shape fit its network, and keeps its own
    initialisation for the rest."""

    arch: str
    config: ModelConfig  # the weights' network, with the data's classes
    source: InitSource
    weights: dict

    def for_run(self, run, config: ModelConfig) -> FineTuning:
        """The start of run folder `run`, a network of `config`: from its checkpoint where it
        started from this file (refused if the file changed since), else from the tensors that fit."""
        recorded = _recorded(Path(run), self.source.path)
        if recorded is not None:
            if recorded[0].sha256 != self.source.sha256:
                raise _changed(recorded[0])
            return FineTuning(self.arch, config, recorded[0], None)
        weights, line = fit_by_shape(self.weights, config, self.source.path)
        fits = all(k in weights for k in (HEAD + ".weight", HEAD + ".bias"))
        source = dataclasses.replace(self.source, head="kept" if fits else "re-initialised")
        return FineTuning(self.arch, config, source, weights, fitted=line)


def read_shared_init(path, num_classes: int, arch: str | None = None, classes=None) -> SharedInit:
    """The weights at `path` (their network: `arch`, else the one they show) as a SharedInit for
    data of `num_classes` (named `classes`, where given: a classifier of other names is left out)."""
    weights, info = read_checkpoint(path, arch)
    if _head_change(weights, info, num_classes, classes).endswith("other names"):
        weights = _without_head(weights)
    config = info.config.replace(num_classes=num_classes)
    return SharedInit(info.arch, config, _source(str(path), info, "kept"), weights)


def fit_by_shape(weights: dict, config: ModelConfig, source: str) -> tuple[dict, str]:
    """The tensors of `weights` that a network of `config` has under the same name and shape,
    and the line that says how many of its tensors those are and which parts keep their fresh
    initialisation (batch norm's step counters are not counted)."""
    with torch.device("meta"):  # shapes only: nothing allocated
        own = SlowFast(config).state_dict()
    fits = {k: v for k, v in weights.items()
            if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    groups = {}  # part: [tensors, loaded]
    for k in own:
        if not k.endswith("num_batches_tracked"):
            counts = groups.setdefault(_group(k), [0, 0])
            counts[0] += 1
            counts[1] += k in fits
    loaded, total = sum(c[1] for c in groups.values()), sum(c[0] for c in groups.values())
    if not loaded:
        raise TrainingError(f"no tensor of {source} has the name and shape of one of this network's "
                            f"({total} tensors); is it the network you meant to start from?")
    fresh = [group if done == 0 else f"{group} ({n - done} of {n})" for group, (n, done) in groups.items() if done < n]
    return fits, (f"{loaded} of {total} tensors loaded where name and shape fit; re-initialised: "
                  f"{', '.join(fresh) or 'none'}")


def _source(path: str, info, head: str) -> InitSource:
    file = resolve_checkpoint(path)
    stat = file.stat()
    return InitSource(path, sha256_of(file), stat.st_size, stat.st_mtime_ns, info.format, info.arch, head)


def _check_options(config: ModelConfig, explicit: dict, path: str) -> None:
    clashes = [f"--{k.replace('_', '-')} {v} (the weights: {getattr(config, k)})" for k, v in explicit.items()
               if k not in FREE_FIELDS and v != getattr(config, k)]
    if clashes:
        raise TrainingError(f"{', '.join(clashes)} contradict{'s' * (len(clashes) == 1)} the network of {path}; "
                            f"leave {'it' if len(clashes) == 1 else 'them'} out to fine-tune the weights' own")


def _recorded(run: Path, path: str) -> tuple[InitSource, str, ModelConfig] | None:
    """What a started run from `path` recorded: (source, arch, network), else None."""
    if not (run / RUN_CHECKPOINT).is_file():
        return None
    try:
        config = json.loads((run / "config.json").read_text())
        source = InitSource(**config["finetune"]["init"])
        model = ModelConfig.from_dict(config["model"])
        arch = config["arch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (source, arch, model) if source.path == path else None


def _check_unchanged(source: InitSource) -> None:
    """A file whose size and modification time are as recorded is not read; otherwise its
    sha256 must be the recorded one (a missing file is fine: the run's checkpoint has it all)."""
    file = Path(source.path)
    file = file / RUN_CHECKPOINT if file.is_dir() else file
    if not file.is_file():
        return
    stat = file.stat()
    if (stat.st_size, stat.st_mtime_ns) == (source.bytes, source.mtime_ns):
        return
    if sha256_of(file) != source.sha256:
        raise _changed(source)


def _changed(source: InitSource) -> TrainingError:
    return TrainingError(f"{source.path} changed since this run started from it (sha256 was "
                         f"{source.sha256[:12]}); restore it, or pass a new --out to fine-tune from the new file")

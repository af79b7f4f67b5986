"""`sfcli train` and `sfcli ablate`: the recipe's options, shared by both, and the tables they print."""

from __future__ import annotations

from pathlib import Path

import click

from sfcli import ablate, presets
from sfcli.balance import BALANCES, make_balance
from sfcli.cli.common import (
    DATA_HELP,
    DEFAULT_ARCH,
    MODEL_FIELDS,
    UserError,
    config_from_options,
    console,
    data_options,
    err_console,
    model_options,
    parse_views,
    print_bad_videos,
    print_eval,
    print_json,
    print_table,
    print_warnings,
    split_data,
)
from sfcli.console import Reporter
from sfcli.devices import pick_device
from sfcli.distributed import init_distributed, is_main_process
from sfcli.finetune import (
    FINETUNE_LR,
    FINETUNE_WARMUP_EPOCHS,
    STAGES,
    FineTuning,
    finetune_defaults,
    prepare_init,
    read_shared_init,
)
from sfcli.recipe import TrainConfig
from sfcli.training import train as train_run
from sfcli.videolist import read_video_list


def training_options(fn):
    """The recipe's options, shared by train and ablate."""
    for option in reversed([
        click.option("--crop", type=click.IntRange(32),
                     help="Training crop [default: 224, tested on 256 views; slowfast_tiny: 48, tested on 48]."),
        click.option("--epochs", type=click.IntRange(1), help=f"Epochs [default: {TrainConfig.epochs}]."),
        click.option("--batch-size", type=click.IntRange(1), default=TrainConfig.batch_size,
                     show_default=True, help="Clips per step over all processes."),
        click.option("--lr", type=click.FloatRange(0, min_open=True),
                     help="Base learning rate [default: 0.1 x batch size / 64]."),
        click.option("--warmup-epochs", type=click.FloatRange(0),
                     help=f"[default: {TrainConfig.warmup_epochs:g}; {FINETUNE_WARMUP_EPOCHS:g} with --init]."),
        click.option("--weight-decay", type=click.FloatRange(0), default=TrainConfig.weight_decay,
                     show_default=True),
        click.option("--precise-bn", type=click.IntRange(0), default=0, show_default=True,
                     help="Recompute BN statistics from N training batches after each epoch, as the reference "
                          "(200); 0: off."),
        click.option("--multigrid", is_flag=True,
                     help="Multigrid training (long and short cycles, the stepwise rates they imply; "
                          "1.5x the epochs, each far cheaper)."),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True),
        click.option("--amp", is_flag=True,
                     help="Mixed precision: bf16 (fp16 on older GPUs) on CUDA and on CPUs with native bf16."),
        click.option("--checkpoint-every", type=click.IntRange(0), default=0, show_default=True,
                     help="Also write a checkpoint every N steps (0: at the end of each epoch only)."),
        click.option("--log-every", type=click.IntRange(0), default=0, show_default=True,
                     help="Also write the loss and learning rate to metrics.jsonl every N steps (0: epochs only)."),
        click.option("--tensorboard", is_flag=True,
                     help="TensorBoard event files in RUN/tensorboard (pip install 'sfcli[tensorboard]')."),
        click.option("--frame-cache-mb", type=click.IntRange(0), default=TrainConfig.frame_cache_mb,
                     show_default=True,
                     help="Decode the videos once and keep their frames in memory when they fit in this (0: off)."),
        click.option("--views", help="Test views of the final test, CLIPSxCROPS [default: 10x3]."),
        click.option("--val-views", default="1x1", show_default=True, help="Views of the per-epoch validation."),
        click.option("--val-every", type=click.IntRange(1),
                     help="Validate every N epochs, and after the last [default: 1; the built-in ablation: "
                          "after the last only]."),
    ]):
        fn = option(fn)
    return fn


def train_config(epochs, batch_size, lr, warmup_epochs, weight_decay, precise_bn, multigrid, seed, amp, workers, device,
                 decoder, frame_cache_mb, checkpoint_every, log_every, tensorboard, val_views, val_every=None,
                 **_) -> TrainConfig:
    return TrainConfig(epochs=epochs or TrainConfig.epochs, batch_size=batch_size, lr=lr,
                       warmup_epochs=TrainConfig.warmup_epochs if warmup_epochs is None else warmup_epochs,
                       weight_decay=weight_decay, precise_bn=precise_bn, multigrid=multigrid, seed=seed, amp=amp,
                       workers=workers, device=device, decoder=decoder, frame_cache_mb=frame_cache_mb,
                       checkpoint_every=checkpoint_every,
                       log_every=log_every, tensorboard=tensorboard, val_views=parse_views(val_views),
                       val_every=val_every or TrainConfig.val_every)


def finetune_options(fn):
    for option in reversed([
        click.option("--init", type=click.Path(),
                     help="Start from these weights (run folder, sfcli file, PySlowFast .pyth or Caffe2 .pkl, "
                          "PyTorchVideo): their network, a new classifier if the classes differ, and base lr "
                          f"{FINETUNE_LR:g} x batch / 64 unless --lr is given."),
        click.option("--freeze", type=click.Choice(STAGES),
                     help="Freeze the network up to and including this stage (res5: train the classifier only)."),
        click.option("--freeze-bn", is_flag=True, help="Batch norm in eval mode, its statistics and affine frozen."),
        click.option("--head-lr-mult", type=click.FloatRange(0), default=1.0, show_default=True,
                     help="The classifier's learning rate as a multiple of the rest's."),
    ]):
        fn = option(fn)
    return fn


def fine_tuning(init, out, arch, overrides, classes, options) -> FineTuning | None:
    """The FineTuning that --init and the freezing options ask for (None: neither); with
    --init, the fine-tuning lr and warm-up defaults go into `options`."""
    controls = {k: options.pop(k) for k in ("freeze", "freeze_bn", "head_lr_mult")}
    given = {k: v for k, v in overrides.items() if v is not None}
    if init is None:
        changed = controls["freeze"] or controls["freeze_bn"] or controls["head_lr_mult"] != 1
        return FineTuning(None, None, None, **controls) if changed else None
    parsed = config_from_options(arch or DEFAULT_ARCH, dict(given))
    options["lr"], options["warmup_epochs"] = finetune_defaults(options["lr"], options["warmup_epochs"],
                                                                options["batch_size"])
    return prepare_init(init, out, len(classes), arch, {k: getattr(parsed, k) for k in given}, classes, **controls)


def read_train_val(data, val_data, prefix, labels, skip_missing):
    data, val_data = split_data(data, val_data)
    train_videos = read_video_list(data, prefix, labels, skip_missing=skip_missing)
    val_videos = read_video_list(val_data, prefix, classes=train_videos.classes,
                                 skip_missing=skip_missing) if val_data else None
    return train_videos, val_videos


@click.command()
@data_options
@click.option("--val-data", type=click.Path(), help="Validation data (default: val.csv beside train.csv).")
@model_options
@training_options
@finetune_options
@click.option("--class-balance", type=click.Choice(BALANCES), default="none", show_default=True,
              help="Imbalanced classes: inverse-frequency loss weights, or a sampler that draws classes uniformly.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumed if it exists).")
def train(data, val_data, prefix, labels, skip_missing, arch, crop, views, out, as_json, init, class_balance,
          **options):
    """Train a network in a run folder; the same command again resumes it."""
    train_videos, val_videos = read_train_val(data, val_data, prefix, labels, skip_missing)
    overrides = {k: options.pop(k) for k in list(options) if k in MODEL_FIELDS}
    finetune = fine_tuning(init, out, arch, overrides, train_videos.classes, options)
    if init:
        arch, model_cfg = finetune.arch, finetune.config
    else:
        arch = arch or DEFAULT_ARCH
        if overrides.get("num_classes") is None:
            overrides["num_classes"] = len(train_videos.classes)
        model_cfg = config_from_options(arch, overrides)
    clip = presets.clip_config(model_cfg, arch, crop, parse_views(views or "10x3"))
    cfg = train_config(**options)
    init_distributed(pick_device(cfg.device))
    print_warnings(train_videos.warnings + (val_videos.warnings if val_videos else ()))
    summary = train_run(Path(out), train_videos, model_cfg, clip, cfg, val_videos, arch, finetune=finetune,
                        balance=make_balance(class_balance, train_videos))
    if not is_main_process():
        return
    if as_json:
        print_json(summary.to_json())
        return
    show = lambda v: "-" if v is None else v  # noqa: E731
    multi_label = train_videos.multi_label  # mAP first: the headline
    print_table(f"{arch} in {out}", [
        (h.epoch, f"{h.loss:.4f}", f"{h.train_top1:.1f}", *((f"{show(h.val_map)}",) if multi_label else ()),
         f"{show(h.val_top1)}", f"{show(h.val_top5)}", f"{h.clips_per_s:.1f}", f"{h.seconds:.0f}")
        for h in summary.history
    ], ("epoch", "loss", "train top-1", *(("val mAP",) if multi_label else ()), "val top-1", "val top-5",
        "clips/s", "seconds"))
    if summary.test is not None:
        print_eval(summary.test, per_class=False)
    print_bad_videos(summary.bad_videos, "videos quarantined in training")


def optional_data_options(fn):
    return data_options(fn, required=False, data_help=f"{DATA_HELP} [default: the built-in synthetic dataset, "
                        f"{ablate.BUILTIN_ARCH} at {ablate.BUILTIN_CROP}² crops, {ablate.BUILTIN_EPOCHS} epochs]")


@click.command("ablate")
@click.argument("study", type=click.Choice(ablate.STUDIES))
@optional_data_options
@click.option("--val-data", type=click.Path(), help="Test data (default: val.csv beside train.csv).")
@model_options
@training_options
@click.option("--betas", help=f"β values of the beta study [default: {','.join(ablate.PAPER_BETAS)}].")
@click.option("--init", type=click.Path(),
              help="Start every variant from these weights (what train --init takes): the variants change "
                   "their network, and each loads the tensors whose name and shape fit it; base lr "
                   f"{FINETUNE_LR:g} x batch / 64 unless --lr is given.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: runs/ablate-STUDY].")
def ablate_command(study, data, val_data, prefix, labels, skip_missing, arch, crop, views, betas, init, out,
                   as_json, **options):
    """Reproduce a study of the paper's Table 5: train and test each variant, one table."""
    builtin = data is None
    if builtin:
        if val_data is not None:
            raise UserError("--val-data needs --data")
        if arch is None and not init:  # the built-in study's own network and sizes
            arch, crop = ablate.BUILTIN_ARCH, crop or ablate.BUILTIN_CROP
        options["epochs"] = options["epochs"] or ablate.BUILTIN_EPOCHS
        options["val_every"] = options["val_every"] or options["epochs"]  # the table reads only the final test
        err_console.print(f"no --data: the built-in synthetic dataset ({ablate.cache_folder()})")
        data = ablate.builtin_dataset()
    train_videos, val_videos = read_train_val(data, val_data, prefix, labels, skip_missing)
    if val_videos is None:
        raise UserError("an ablation tests every variant: give --val-data (or a folder with train.csv and val.csv)")
    shared = None
    if init:  # the weights' network, read once for every variant
        shared = read_shared_init(init, len(train_videos.classes), arch, train_videos.classes)
        arch = shared.arch
        options["lr"], options["warmup_epochs"] = finetune_defaults(options["lr"], options["warmup_epochs"],
                                                                    options["batch_size"])
    arch = arch or DEFAULT_ARCH
    overrides = {k: v for k in list(options) if k in MODEL_FIELDS and (v := options.pop(k)) is not None}
    if study == "beta" and betas is None:
        base = shared.config if shared else presets.build_config(arch)
        betas, dropped = ablate.default_betas(base.replace(**overrides))
        if dropped:
            err_console.print(f"β {', '.join(map(str, dropped))} would leave {arch}'s Fast pathway without "
                              f"channels: left out (a larger --width keeps them)")
    elif betas is not None:
        betas = ablate.parse_betas(betas)
    cfg = train_config(**options)
    init_distributed(pick_device(cfg.device))
    print_warnings(train_videos.warnings + val_videos.warnings)
    views = parse_views(views) if views else ablate.BUILTIN_VIEWS if builtin else (10, 3)
    result = ablate.run_study(study, Path(out or f"runs/ablate-{study}"), train_videos, val_videos, arch, cfg,
                              crop, views, overrides, betas, Reporter(), shared)
    if not is_main_process():
        return
    if as_json:
        print_json(result)
        return
    show = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    print_table(f"ablate {study}: {arch}{f' from {init}' if init else ''}, {result['epochs']} epochs, "
                f"{result['views']} views, {len(train_videos.paths)} train / {len(val_videos.paths)} test videos", [
        (r["variant"], *((show(r["map"], ".1f"),) if val_videos.multi_label else ()), f"{r['top1']:.1f}",
         f"{r['top5']:.1f}", f"{r['gflops']:.3f}", f"{r['params']:,}", f"{r['train_seconds']:.0f}",
         show(r["paper_top1"], ".1f"), show(r["paper_gflops"], ".1f"))
        for r in result["rows"]
    ], ("variant", *(("mAP",) if val_videos.multi_label else ()), "top-1", "top-5", "GFLOPs", "params", "train s",
        "paper top-1", "paper GFLOPs"))
    console.print(f"results: {result['files']['json']}, {result['files']['csv']}, {result['files']['plot']}")

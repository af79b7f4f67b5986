"""The `sfcli` command line: click commands only. Each parses its options and calls a library
function that the tests call directly."""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
from pathlib import Path

import click
from rich.table import Table

import torch.distributed as dist

from sfcli import ablate, model_config, presets
from sfcli import infer as sfinfer
from sfcli.console import Reporter, make_console
from sfcli.cost import describe
from sfcli.devices import keep_freed_memory, pick_device
from sfcli.distributed import init_distributed, is_main_process
from sfcli.errors import ConfigError, Interrupted, SfcliError
from sfcli.evaluate import EvalResult, evaluate_checkpoint
from sfcli.predict import load_predictor
from sfcli.recipe import TrainConfig
from sfcli.train import train as train_run
from sfcli.videolist import read_video_list

DEFAULT_ARCH = "slowfast_4x16_r50"
MODEL_FIELDS = {f.name for f in dataclasses.fields(model_config.ModelConfig)}

console = make_console()
err_console = make_console(stderr=True)


class UserError(click.ClickException):
    """An error the user can fix; printed as one sentence, exit code 2 for bad options."""

    exit_code = 2


def model_options(fn):
    """--arch plus one option per ModelConfig field; unset options leave the preset's value."""
    options = [
        click.option("--arch", help=f"Preset [default: slowfast_4x16_r50]: {', '.join(presets.PRESETS)}."),
        click.option("--depth", type=int, help="ResNet depth: 50 or 101 (14, 26 for small CPU networks)."),
        click.option("--width", type=int, help="Channels of the Slow stem (64 in the paper)."),
        click.option("--alpha", type=int, help="Frame-rate ratio Fast/Slow."),
        click.option("--beta", help="Channel ratio Fast/Slow, e.g. 1/8."),
        click.option("--frames", type=int, help="T: frames the Slow pathway sees."),
        click.option("--tau", type=int, help="Temporal stride of the Slow pathway, in 30 fps frames."),
        click.option("--fusion-kernel", type=int, help="Temporal kernel of the T-conv laterals."),
        click.option("--fusion-ratio", type=int, help="T-conv lateral output channels / Fast channels."),
        click.option("--lateral", type=click.Choice(model_config.LATERALS), help="Fast-to-Slow connection."),
        click.option("--pathway", type=click.Choice(model_config.PATHWAYS), help="Which pathways to build."),
        click.option("--fast-input", type=click.Choice(model_config.FAST_INPUTS), help="What the Fast pathway sees."),
        click.option("--nonlocal-res4", help="Comma-separated res4 blocks followed by a non-local block."),
        click.option("--temporal-res4", type=int, help="res4 blocks with a temporal kernel (default all)."),
        click.option("--num-classes", type=int, help="Classes of the classifier."),
        click.option("--dropout", type=float, help="Dropout before the classifier."),
        click.option("--zero-init-residual/--no-zero-init-residual", default=None,
                     help="Start each residual block as the identity (the reference's init)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def config_from_options(arch: str, overrides: dict) -> model_config.ModelConfig:
    if overrides.get("nonlocal_res4") is not None:
        try:
            overrides["nonlocal_res4"] = tuple(int(i) for i in overrides["nonlocal_res4"].split(",") if i.strip())
        except ValueError:
            raise UserError(f"--nonlocal-res4 takes comma-separated block numbers, got {overrides['nonlocal_res4']!r}")
    try:
        return presets.build_config(arch, **overrides)
    except ConfigError as e:
        raise UserError(str(e)) from None


def print_table(title: str, rows: list[tuple], columns: tuple[str, ...]):
    table = Table(title=title, min_width=min(len(title), console.width))
    for column in columns:
        table.add_column(column, overflow="fold")  # paths are never cut short
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)


def print_json(data):
    click.echo(json.dumps(data, indent=2))


class OneLineErrors(click.Group):
    """Every error a user can cause ends in one line on stderr and a non-zero exit, no usage dump
    and no traceback."""

    def main(self, *args, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
            if isinstance(code, int) and code:  # click.exceptions.Exit(code) from a command
                sys.exit(code)
            return code
        except click.exceptions.Abort:
            err_console.print("sfcli: interrupted")
            sys.exit(130)
        except click.ClickException as e:
            click.echo(f"sfcli: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except Interrupted as e:
            click.echo(f"sfcli: {e}", err=True)
            sys.exit(128 + e.signum)
        except SfcliError as e:
            click.echo(f"sfcli: error: {e}", err=True)
            sys.exit(1)
        finally:
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sfcli")
def cli():
    """SlowFast video networks: train, evaluate, ablate and run them."""


@cli.command()
@model_options
@click.option("--crop", type=int, default=256, show_default=True, help="Side of the square view counted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(arch, crop, as_json, **overrides):
    """Parameters, GFLOPs of one view and frames per pathway of a network."""
    arch = arch or DEFAULT_ARCH
    if crop < 32:
        raise UserError(f"--crop must be at least 32 pixels, got {crop}")
    cfg = config_from_options(arch, overrides)
    result = describe(cfg, arch, crop)
    if as_json:
        print_json(result)
        return
    rows = [
        ("parameters", f"{result['params']:,}"),
        (f"GFLOPs per {crop}² view", f"{result['gflops']:.2f}"),
        ("Slow frames", f"{result['slow_frames']} (stride {result['slow_stride']})" if result["slow_frames"] else "-"),
        ("Fast frames", f"{result['fast_frames']} (stride {result['fast_stride']})" if result["fast_frames"] else "-"),
        ("crop", f"{crop}²"),
    ]
    rows += [(k, v) for k, v in result["config"].items()]
    print_table(arch, rows, ("", "value"))


DATA_HELP = "Kinetics CSV, PySlowFast list, class-folder tree, or a folder holding train.csv."


def data_options(fn, required: bool = True, data_help: str = DATA_HELP):
    """--data and how its videos are listed and decoded; `sfcli ablate` makes --data optional."""
    for option in reversed([
        click.option("--data", required=required, type=click.Path(), help=data_help),
        click.option("--prefix", type=click.Path(file_okay=False), help="Folder the list's relative paths resolve against."),
        click.option("--labels", type=click.Path(dir_okay=False), help="File of class names, one per line, in order."),
        click.option("--skip-missing", is_flag=True, help="Drop listed videos that are missing instead of stopping."),
        click.option("--workers", type=click.IntRange(0), default=2, show_default=True, help="Loader processes."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--decoder", type=click.Choice(["auto", "decord", "pyav"]), default="auto", show_default=True),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]):
        fn = option(fn)
    return fn


def split_data(data, val_data):
    """A folder with train.csv (as `sfcli synth` and Kinetics downloads lay out) stands for its
    train.csv, and its val.csv is the default validation data."""
    folder = Path(data)
    if folder.is_dir() and (folder / "train.csv").is_file():
        data = folder / "train.csv"
        if val_data is None and (folder / "val.csv").is_file():
            val_data = folder / "val.csv"
    return data, val_data


def parse_views(text: str) -> tuple[int, int]:
    """'10x3' to (clips, crops)."""
    try:
        clips, crops = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"views are CLIPSxCROPS, e.g. 10x3, got {text!r}") from None
    if clips < 1 or crops not in (1, 2, 3):
        raise UserError(f"views need at least one clip and 1 to 3 crops, got {text!r}")
    return clips, crops


def training_options(fn):
    """The recipe's options, shared by train and ablate."""
    for option in reversed([
        click.option("--crop", type=click.IntRange(32),
                     help="Training crop [default: 224, tested on 256 views; slowfast_tiny: 64, tested on 64]."),
        click.option("--epochs", type=click.IntRange(1), help=f"Epochs [default: {TrainConfig.epochs}]."),
        click.option("--batch-size", type=click.IntRange(1), default=TrainConfig.batch_size,
                     show_default=True, help="Clips per step over all processes."),
        click.option("--lr", type=float, help="Base learning rate [default: 0.1 x batch size / 64]."),
        click.option("--warmup-epochs", type=click.FloatRange(0), default=TrainConfig.warmup_epochs,
                     show_default=True),
        click.option("--weight-decay", type=click.FloatRange(0), default=TrainConfig.weight_decay,
                     show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--amp", is_flag=True,
                     help="Mixed precision: bf16 (fp16 on older GPUs) on CUDA and on CPUs with native bf16."),
        click.option("--checkpoint-every", type=click.IntRange(0), default=0, show_default=True,
                     help="Also write a checkpoint every N steps (0: at the end of each epoch only)."),
        click.option("--views", help="Test views of the final test, CLIPSxCROPS [default: 10x3]."),
        click.option("--val-views", default="1x1", show_default=True, help="Views of the per-epoch validation."),
    ]):
        fn = option(fn)
    return fn


def train_config(epochs, batch_size, lr, warmup_epochs, weight_decay, seed, amp, workers, device, decoder,
                 checkpoint_every, val_views, **_) -> TrainConfig:
    return TrainConfig(epochs=epochs or TrainConfig.epochs, batch_size=batch_size, lr=lr,
                       warmup_epochs=warmup_epochs, weight_decay=weight_decay, seed=seed, amp=amp,
                       workers=workers, device=device, decoder=decoder, checkpoint_every=checkpoint_every,
                       val_views=parse_views(val_views))


def read_train_val(data, val_data, prefix, labels, skip_missing):
    data, val_data = split_data(data, val_data)
    train_videos = read_video_list(data, prefix, labels, skip_missing=skip_missing)
    val_videos = read_video_list(val_data, prefix, classes=train_videos.classes,
                                 skip_missing=skip_missing) if val_data else None
    return train_videos, val_videos


@cli.command()
@data_options
@click.option("--val-data", type=click.Path(), help="Validation data (default: val.csv beside train.csv).")
@model_options
@training_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumed if it exists).")
def train(data, val_data, prefix, labels, skip_missing, arch, crop, views, out, as_json, **options):
    """Train a network in a run folder; the same command again resumes it."""
    arch = arch or DEFAULT_ARCH
    train_videos, val_videos = read_train_val(data, val_data, prefix, labels, skip_missing)
    overrides = {k: options.pop(k) for k in list(options) if k in MODEL_FIELDS}
    if overrides.get("num_classes") is None:
        overrides["num_classes"] = len(train_videos.classes)
    model_cfg = config_from_options(arch, overrides)
    clip = presets.clip_config(model_cfg, arch, crop, parse_views(views or "10x3"))
    cfg = train_config(**options)
    init_distributed(pick_device(cfg.device))
    summary = train_run(Path(out), train_videos, model_cfg, clip, cfg, val_videos, arch)
    if not is_main_process():
        return
    if as_json:
        print_json(summary.to_json())
        return
    show = lambda v: "-" if v is None else v  # noqa: E731
    print_table(f"{arch} in {out}", [
        (h.epoch, f"{h.loss:.4f}", f"{h.train_top1:.1f}", f"{show(h.val_top1)}", f"{show(h.val_top5)}",
         f"{h.clips_per_s:.1f}", f"{h.seconds:.0f}") for h in summary.history
    ], ("epoch", "loss", "train top-1", "val top-1", "val top-5", "clips/s", "seconds"))
    if summary.test is not None:
        print_eval(summary.test, per_class=False)
    print_bad_videos(summary.bad_videos, "videos quarantined in training")


def optional_data_options(fn):
    return data_options(fn, required=False, data_help=f"{DATA_HELP} [default: the built-in synthetic dataset]")


@cli.command("ablate")
@click.argument("study", type=click.Choice(ablate.STUDIES))
@optional_data_options
@click.option("--val-data", type=click.Path(), help="Test data (default: val.csv beside train.csv).")
@model_options
@training_options
@click.option("--betas", help=f"β values of the beta study [default: {','.join(ablate.PAPER_BETAS)}].")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: runs/ablate-STUDY].")
def ablate_command(study, data, val_data, prefix, labels, skip_missing, arch, crop, views, betas, out, as_json,
                   **options):
    """Reproduce a study of the paper's Table 5: train and test each variant, one table."""
    builtin = data is None
    if builtin:
        if val_data is not None:
            raise UserError("--val-data needs --data")
        arch = arch or ablate.BUILTIN_ARCH
        options["epochs"] = options["epochs"] or ablate.BUILTIN_EPOCHS
        err_console.print(f"no --data: the built-in synthetic dataset ({ablate.cache_folder()})")
        data = ablate.builtin_dataset()
    arch = arch or DEFAULT_ARCH
    train_videos, val_videos = read_train_val(data, val_data, prefix, labels, skip_missing)
    if val_videos is None:
        raise UserError("an ablation tests every variant: give --val-data (or a folder with train.csv and val.csv)")
    overrides = {k: v for k in list(options) if k in MODEL_FIELDS and (v := options.pop(k)) is not None}
    if study == "beta" and betas is None:
        betas, dropped = ablate.default_betas(arch, overrides)
        if dropped:
            err_console.print(f"β {', '.join(map(str, dropped))} would leave {arch}'s Fast pathway without "
                              f"channels: left out (a larger --width keeps them)")
    elif betas is not None:
        betas = ablate.parse_betas(betas)
    cfg = train_config(**options)
    init_distributed(pick_device(cfg.device))
    views = parse_views(views) if views else ablate.BUILTIN_VIEWS if builtin else (10, 3)
    result = ablate.run_study(study, Path(out or f"runs/ablate-{study}"), train_videos, val_videos, arch, cfg,
                              crop, views, overrides, betas, Reporter())
    if not is_main_process():
        return
    if as_json:
        print_json(result)
        return
    show = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    print_table(f"ablate {study}: {arch}, {result['epochs']} epochs, {result['views']} views, "
                f"{len(train_videos.paths)} train / {len(val_videos.paths)} test videos", [
        (r["variant"], f"{r['top1']:.1f}", f"{r['top5']:.1f}", f"{r['gflops']:.3f}", f"{r['params']:,}",
         f"{r['train_seconds']:.0f}", show(r["paper_top1"], ".1f"), show(r["paper_gflops"], ".1f"))
        for r in result["rows"]
    ], ("variant", "top-1", "top-5", "GFLOPs", "params", "train s", "paper top-1", "paper GFLOPs"))
    console.print(f"results: {result['files']['json']}, {result['files']['csv']}, {result['files']['plot']}")


def print_eval(result: EvalResult, per_class: bool = True):
    if per_class:
        print_table("per class", [(c.name, c.videos, "-" if c.top1 is None else f"{c.top1:.1f}")
                                  for c in result.per_class], ("class", "videos", "top-1 %"))
    print_table(f"test, {result.views[0]}x{result.views[1]} views per video", [
        ("top-1 %", f"{result.top1:.2f}"), ("top-5 %", f"{result.top5:.2f}"),
        ("videos scored", result.scored), ("videos excluded (could not be decoded)", result.excluded),
    ], ("", "value"))
    print_bad_videos(result.excluded_videos, "videos excluded from the test")


def print_bad_videos(bad, title: str):
    if bad:
        print_table(title, [(b.path, b.reason) for b in bad], ("video", "reason"))


@cli.command("eval")
@click.option("--checkpoint", required=True, type=click.Path(), help="A run folder or a checkpoint file.")
@data_options
@click.option("--arch", help="Architecture of a foreign checkpoint (sfcli checkpoints carry their own).")
@click.option("--views", default="10x3", show_default=True, help="CLIPSxCROPS per video.")
@click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True, help="Videos per batch.")
def evaluate(checkpoint, data, prefix, labels, skip_missing, arch, views, batch_size, workers, device, decoder,
             as_json):
    """Test a checkpoint with the paper's multi-view protocol: top-1, top-5, per class."""
    data, _ = split_data(data, None)
    result = evaluate_checkpoint(checkpoint, data, views=parse_views(views), batch_size=batch_size, workers=workers,
                                 device=device, decoder=decoder, prefix=prefix, labels=labels,
                                 skip_missing=skip_missing, arch=arch)
    if not is_main_process():
        return
    if as_json:
        print_json(result.to_json())
        return
    print_eval(result.test)


def parse_size(value: str) -> tuple[int, int]:
    """'128' or '128x170' (height x width) to (height, width)."""
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        raise UserError(f"--size takes HEIGHT or HEIGHTxWIDTH, e.g. 128x170, got {value!r}") from None
    if len(parts) not in (1, 2):
        raise UserError(f"--size takes HEIGHT or HEIGHTxWIDTH, e.g. 128x170, got {value!r}")
    return (parts[0], parts[-1])


@cli.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--classes", help="Comma-separated built-in class names, or a number N for the first N (default all).")
@click.option("--train-per-class", type=click.IntRange(1), default=100, show_default=True)
@click.option("--val-per-class", type=click.IntRange(1), default=20, show_default=True)
@click.option("--size", default="96", show_default=True, help="Frame size, HEIGHT or HEIGHTxWIDTH (even).")
@click.option("--frames", type=click.IntRange(2), default=64, show_default=True, help="Frames per video.")
@click.option("--fps", type=click.IntRange(1), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def synth(out, classes, train_per_class, val_per_class, size, frames, fps, seed, as_json):
    """Write a dataset of real mp4 files with Kinetics-format train.csv and val.csv."""
    from rich.progress import Progress

    from sfcli import synth as sfsynth

    if classes is not None:
        classes = int(classes) if classes.strip().isdigit() else [c.strip() for c in classes.split(",") if c.strip()]
    try:  # options are checked before anything is written
        classes, size = sfsynth.select_classes(classes), sfsynth.check_size(parse_size(size))
    except ValueError as e:
        raise UserError(str(e)) from None
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("writing videos", total=None)
        summary = sfsynth.write_dataset(
            out, classes=classes, train_per_class=train_per_class, val_per_class=val_per_class,
            size=size, frames=frames, fps=fps, seed=seed,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if as_json:
        print_json(summary)
        return
    print_table(f"synthetic dataset in {summary['root']}", [
        ("classes", ", ".join(summary["classes"])),
        ("videos", f"{summary['train']} train, {summary['val']} val"),
        ("frames", f"{summary['frames']} at {summary['fps']} fps, {summary['size'][0]}x{summary['size'][1]}"),
        ("codec", summary["codec"]),
        ("seconds", f"{summary['seconds']:.1f}"),
    ], ("", "value"))


@cli.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint", type=click.Path(), help="A run folder or an sfcli checkpoint.")
@click.option("--weights", type=click.Path(), help="PySlowFast (.pyth) or PyTorchVideo weights; see --arch.")
@click.option("--arch", help="Architecture of --weights (default: recognised from the weights).")
@click.option("--labels", type=click.Path(dir_okay=False), help="Class names, one per line, in output order.")
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True)
@click.option("--views", default="10x3", show_default=True, help="CLIPSxCROPS per video, or per window.")
@click.option("--window", type=click.FloatRange(min=0, min_open=True), help="Also predict every window of S seconds.")
@click.option("--stride", type=click.FloatRange(min=0, min_open=True), help="Seconds between windows [default: --window].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--decoder", type=click.Choice(["auto", "decord", "pyav"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list of results.")
def infer(videos, checkpoint, weights, arch, labels, top_k, views, window, stride, device, decoder, as_json):
    """Top-k labels of videos (files or folders), and per time window with --window."""
    if (checkpoint is None) == (weights is None):
        raise UserError("give exactly one of --checkpoint and --weights")
    if stride is not None and window is None:
        raise UserError("--stride needs --window")
    predictor = load_predictor(checkpoint or weights, arch, labels, parse_views(views), device)
    results, failed = [], 0
    for path, result, error in sfinfer.infer_many(predictor, videos, top_k, window, stride, decoder):
        if error:
            failed += 1
            click.echo(f"sfcli: {path}: {error}", err=True)
            continue
        results.append(result)
        if not as_json:
            print_prediction(result)
    if as_json:
        print_json(results)
    if failed:
        raise click.exceptions.Exit(1)


def print_prediction(result: dict):
    title = f"{result['video']} ({result['seconds']:.1f} s at {result['fps']:.1f} fps)"
    print_table(title, [(i, p["label"], f"{p['score']:.3f}") for i, p in enumerate(result["predictions"], 1)],
                ("#", "label", "probability"))
    if result["windows"]:
        print_table(f"{result['video']}: per window", [
            (f"{w['start']:.1f}-{w['end']:.1f} s", ", ".join(f"{p['label']} {p['score']:.2f}" for p in w["predictions"][:3]))
            for w in result["windows"]
        ], ("window", "top labels"))


@cli.command()
@click.argument("src", type=click.Path())
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--arch", help="Architecture of the weights (default: recognised from them).")
@click.option("--labels", type=click.Path(dir_okay=False), help="Class names to store, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert(src, dst, arch, labels, as_json):
    """Write any checkpoint (PySlowFast, PyTorchVideo, sfcli) as an sfcli checkpoint."""
    from sfcli.checkpoint import convert as convert_checkpoint
    from sfcli.videolist import read_labels_file

    summary = convert_checkpoint(src, dst, arch, read_labels_file(labels) if labels else None)
    if as_json:
        print_json(summary.to_json())
        return
    print_table(f"{src} -> {dst}", [("format", summary.format), ("arch", summary.arch),
                                    ("num_classes", summary.num_classes), ("classes_source", summary.classes_source),
                                    ("params", summary.params), ("tensors", summary.tensors)], ("", "value"))


def main():
    # The imports' objects live as long as the process: left out of garbage collection, they are
    # not swept at exit either (0.2 s of every command, measured).
    gc.freeze()
    keep_freed_memory()
    cli(prog_name="sfcli")


if __name__ == "__main__":
    main()

"""What every `sfcli` command shares: the consoles, one-sentence errors, tables and JSON, and
the option groups (model, data) that several commands take."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import click

from sfcli import model_config, presets
from sfcli.console import Reporter, make_console, make_table, warning_line
from sfcli.distributed import is_main_process
from sfcli.errors import ConfigError
from sfcli.evaluation import EvalResult

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
            raise UserError("--nonlocal-res4 takes comma-separated block numbers, "
                            f"got {overrides['nonlocal_res4']!r}") from None
    try:
        return presets.build_config(arch, **overrides)
    except ConfigError as e:
        raise UserError(str(e)) from None


def print_table(title: str, rows: list[tuple], columns: tuple[str, ...]):
    console.print(make_table(title, rows, columns, console))


def print_json(data):
    click.echo(json.dumps(data, indent=2))


DATA_HELP = "Kinetics CSV, PySlowFast list, class-folder tree, or a folder holding train.csv."


def data_options(fn, required: bool = True, data_help: str = DATA_HELP):
    """--data and how its videos are listed and decoded; `sfcli ablate` makes --data optional."""
    for option in reversed([
        click.option("--data", required=required, type=click.Path(), help=data_help),
        click.option("--prefix", type=click.Path(file_okay=False),
                     help="Folder the list's relative paths resolve against."),
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


def print_eval(result: EvalResult, per_class: bool = True):
    rate = lambda v, digits=1: "-" if v is None else f"{v:.{digits}f}"  # noqa: E731
    multi_label = result.map is not None
    if per_class and multi_label:
        print_table("per class", [(c.name, c.videos, rate(c.ap)) for c in result.per_class],
                    ("class", "videos with it", "average precision %"))
    elif per_class:
        print_table("per class", [(c.name, c.videos, rate(c.top1), rate(c.precision), rate(c.f1))
                                  for c in result.per_class],
                    ("class", "videos", "top-1 (recall) %", "precision %", "F1 %"))
        if result.most_confused:
            print_table("most confused", [(p.true, p.predicted, p.videos, f"{p.share:.1f}")
                                          for p in result.most_confused],
                        ("true class", "predicted", "videos", "% of the class"))
    headline = [("mAP %", rate(result.map, 2))] if multi_label else []
    print_table(f"test, {result.views} views per video", headline + [
        ("top-1 %" + (" (top class is one of the labels)" if multi_label else ""), f"{result.top1:.2f}"),
        ("top-5 %", f"{result.top5:.2f}"), ("mean class accuracy %", rate(result.mean_class_accuracy, 2)),
        ("videos scored", result.scored), ("videos excluded", result.excluded),
    ], ("", "value"))
    print_bad_videos(result.excluded_videos, "videos excluded from the test")


def print_warnings(warnings):
    """One line each on stderr (rank 0 only): what was done otherwise than asked, that the user should know."""
    for warning in warnings if is_main_process() else ():
        click.echo(warning_line(warning), err=True)


def print_bad_videos(bad, title: str):
    if bad:
        print_table(title, [(b.path, b.reason) for b in bad], ("video", "reason"))


def track(reporter: Reporter, description: str):
    """A progress callback (done, total) drawing one bar of `reporter`."""
    task, start = reporter.task(description, total=0), time.perf_counter()

    def update(done: int, total: int):
        reporter.progress.update(task, total=total)
        reporter.update(task, done, done / (time.perf_counter() - start))

    return update

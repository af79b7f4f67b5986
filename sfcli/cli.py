"""The `sfcli` command line: click commands only. Each parses its options and calls a library
function that the tests call directly."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from sfcli import model as sfmodel

console = Console(stderr=False)
err_console = Console(stderr=True)


class UserError(click.ClickException):
    """An error the user can fix; printed as one sentence, exit code 2 for bad options."""

    exit_code = 2


def model_options(fn):
    """--arch plus one option per ModelConfig field; unset options leave the preset's value."""
    options = [
        click.option("--arch", default="slowfast_4x16_r50", show_default=True,
                     help=f"Preset: {', '.join(sfmodel.PRESETS)}."),
        click.option("--depth", type=int, help="ResNet depth: 50 or 101 (14, 26 for small CPU networks)."),
        click.option("--width", type=int, help="Channels of the Slow stem (64 in the paper)."),
        click.option("--alpha", type=int, help="Frame-rate ratio Fast/Slow."),
        click.option("--beta", help="Channel ratio Fast/Slow, e.g. 1/8."),
        click.option("--frames", type=int, help="T: frames the Slow pathway sees."),
        click.option("--tau", type=int, help="Temporal stride of the Slow pathway, in 30 fps frames."),
        click.option("--fusion-kernel", type=int, help="Temporal kernel of the T-conv laterals."),
        click.option("--fusion-ratio", type=int, help="T-conv lateral output channels / Fast channels."),
        click.option("--lateral", type=click.Choice(sfmodel.LATERALS), help="Fast-to-Slow connection."),
        click.option("--pathway", type=click.Choice(sfmodel.PATHWAYS), help="Which pathways to build."),
        click.option("--fast-input", type=click.Choice(sfmodel.FAST_INPUTS), help="What the Fast pathway sees."),
        click.option("--nonlocal-res4", help="Comma-separated res4 blocks followed by a non-local block."),
        click.option("--temporal-res4", type=int, help="res4 blocks with a temporal kernel (default all)."),
        click.option("--num-classes", type=int, help="Classes of the classifier."),
        click.option("--dropout", type=float, help="Dropout before the classifier."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def config_from_options(arch: str, overrides: dict) -> sfmodel.ModelConfig:
    if overrides.get("nonlocal_res4") is not None:
        try:
            overrides["nonlocal_res4"] = tuple(int(i) for i in overrides["nonlocal_res4"].split(",") if i.strip())
        except ValueError:
            raise UserError(f"--nonlocal-res4 takes comma-separated block numbers, got {overrides['nonlocal_res4']!r}")
    try:
        return sfmodel.build_config(arch, **overrides)
    except sfmodel.ConfigError as e:
        raise UserError(str(e)) from None


def print_table(title: str, rows: list[tuple], columns: tuple[str, ...]):
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
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
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            err_console.print("sfcli: interrupted")
            sys.exit(130)
        except click.ClickException as e:
            click.echo(f"sfcli: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)


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
    if crop < 32:
        raise UserError(f"--crop must be at least 32 pixels, got {crop}")
    cfg = config_from_options(arch, overrides)
    result = sfmodel.describe(cfg, arch, crop)
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
@click.option("--train-per-class", type=click.IntRange(1), default=40, show_default=True)
@click.option("--val-per-class", type=click.IntRange(1), default=10, show_default=True)
@click.option("--size", default="128", show_default=True, help="Frame size, HEIGHT or HEIGHTxWIDTH (even).")
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


def main():
    cli(prog_name="sfcli")


if __name__ == "__main__":
    main()

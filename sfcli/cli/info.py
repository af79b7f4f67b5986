"""`sfcli info` and `sfcli synth`: what a network costs, and a dataset of real videos to try it on."""

from __future__ import annotations

import os

import click

from sfcli.cli.common import (
    DEFAULT_ARCH,
    UserError,
    config_from_options,
    err_console,
    model_options,
    print_json,
    print_table,
)
from sfcli.cost import describe


@click.command()
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


def parse_size(value: str) -> tuple[int, int]:
    """'128' or '128x170' (height x width) to (height, width)."""
    try:
        parts = [int(v) for v in value.lower().split("x")]
    except ValueError:
        raise UserError(f"--size takes HEIGHT or HEIGHTxWIDTH, e.g. 128x170, got {value!r}") from None
    if len(parts) not in (1, 2):
        raise UserError(f"--size takes HEIGHT or HEIGHTxWIDTH, e.g. 128x170, got {value!r}")
    return (parts[0], parts[-1])


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--classes", help="Comma-separated class names, or a number N for the first N [default: the first 8: "
                                "ring, plus sign, triangle, bar, hopping, jittering, rising, falling; then square, "
                                "diamond, x, hourglass, bouncing, resting, blinking, pulsing].")
@click.option("--train-per-class", type=click.IntRange(1), default=100, show_default=True)
@click.option("--val-per-class", type=click.IntRange(1), default=20, show_default=True)
@click.option("--size", default="64", show_default=True, help="Frame size, HEIGHT or HEIGHTxWIDTH (even).")
@click.option("--frames", type=click.IntRange(2), default=64, show_default=True, help="Frames per video.")
@click.option("--fps", type=click.IntRange(1), default=30, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--multi-label", is_flag=True,
              help="Two sprites per video (its class and a random other), listed in multi-label CSVs.")
@click.option("--workers", type=click.IntRange(1), default=os.cpu_count() or 1, show_default="the CPUs",
              help="Processes encoding videos (the files are the same for any number).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def synth(out, classes, train_per_class, val_per_class, size, frames, fps, seed, multi_label, workers, as_json):
    """Write a dataset of real mp4 files with Kinetics-format train.csv and val.csv (multi-label
    CSVs, header path,labels, with --multi-label)."""
    from rich.progress import Progress

    from sfcli import synth as sfsynth

    if classes is not None:
        classes = int(classes) if classes.strip().isdigit() else [c.strip() for c in classes.split(",") if c.strip()]
    try:  # options are checked before anything is written
        classes, size = sfsynth.select_classes(classes), sfsynth.check_size(parse_size(size))
    except ValueError as e:
        raise UserError(str(e)) from None
    if multi_label and len(classes) < 2:
        raise UserError("--multi-label needs at least 2 classes")
    with Progress(console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        task = progress.add_task("writing videos", total=None)
        summary = sfsynth.write_dataset(
            out, classes=classes, train_per_class=train_per_class, val_per_class=val_per_class,
            size=size, frames=frames, fps=fps, seed=seed, multi_label=multi_label, workers=workers,
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
        ("labels", "two per video (multi-label)" if multi_label else "one per video"),
        ("seconds", f"{summary['seconds']:.1f}"),
    ], ("", "value"))

"""`sfcli infer` and `sfcli convert`: what happens in a video, with any checkpoint users have."""

from __future__ import annotations

import dataclasses
import math

import click

from sfcli import infer as sfinfer
from sfcli.cli.common import UserError, parse_views, print_json, print_table, print_warnings, track
from sfcli.console import Reporter
from sfcli.evaluation import BadVideo
from sfcli.hub import DEFAULT_WEIGHTS
from sfcli.infer import VideoPrediction
from sfcli.predict import HEAD_POOLS, load_predictor


@click.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--checkpoint", type=click.Path(), help="A run folder or an sfcli checkpoint.")
@click.option("--weights", type=click.Path(),
              help=f"PySlowFast (.pyth, .pkl) or PyTorchVideo weights, or a name `sfcli models` lists; see --arch "
                   f"[default: {DEFAULT_WEIGHTS}, downloaded once].")
@click.option("--arch", help="Architecture of --weights (default: recognised from the weights).")
@click.option("--onnx", type=click.Path(dir_okay=False),
              help="An `sfcli export --format onnx` file, run through onnxruntime (pip install 'sfcli[onnx]').")
@click.option("--labels", type=click.Path(dir_okay=False), help="Class names, one per line, in output order.")
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True)
@click.option("--views", default="10x3", show_default=True, help="CLIPSxCROPS per video, or per window.")
@click.option("--window", type=click.FloatRange(min=0, min_open=True), help="Also predict every window of S seconds.")
@click.option("--stride", type=click.FloatRange(min=0, min_open=True),
              help="Seconds between windows [default: --window].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--decoder", type=click.Choice(["auto", "decord", "pyav"]), default="auto", show_default=True)
@click.option("--head-pool", type=click.Choice(HEAD_POOLS), default="reference", show_default=True,
              help="Views larger than the training crop: the reference's per-position head, or one global pool.")
@click.option("--render", type=click.Path(dir_okay=False),
              help="Write the video again with each window's top labels drawn on it (one video only).")
@click.option("--timeline", type=click.Path(dir_okay=False),
              help="Write each window's top labels as CSV: start, end, label, score (one video only).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON list: each video's result, or its path, reason and details where it was not scored.")
def infer(videos, checkpoint, weights, arch, onnx, labels, top_k, views, window, stride, device, decoder, head_pool,
          render, timeline, as_json):
    """Top-k labels of videos (files or folders), and per time window with --window."""
    if [checkpoint, weights, onnx].count(None) < 2:
        raise UserError("give at most one of --checkpoint, --weights and --onnx")
    if [checkpoint, weights, onnx].count(None) == 3:
        weights = DEFAULT_WEIGHTS  # the design's own usage line: `sfcli infer video.mp4`
    if stride is not None and window is None:
        raise UserError("--stride needs --window")
    for name, seconds in (("--window", window), ("--stride", stride)):
        if seconds is not None and not math.isfinite(seconds):
            raise UserError(f"{name} takes a finite number of seconds, got {seconds}")
    if onnx:
        from sfcli.export import load_onnx_predictor

        predictor = load_onnx_predictor(onnx, labels, parse_views(views))
    else:
        predictor = load_predictor(checkpoint or weights, arch, labels, parse_views(views), device, head_pool)
    if (render or timeline) and len(sfinfer.video_paths(videos)) != 1:
        raise UserError("--render and --timeline take exactly one video")
    if render or timeline:
        from sfcli.extract import network_span
        from sfcli.render import render_video, write_timeline

        window = window or network_span(predictor)  # default: back-to-back clips of the network's span
    results, failed = [], 0
    with Reporter() as reporter:
        scored = list(sfinfer.infer_many(predictor, videos, top_k, window, stride, decoder, track(reporter, "score")))
    for _, result, bad in scored:
        if bad:
            failed += 1
            click.echo(failure_line(bad), err=True)
            results.append(bad.to_json())  # as eval's JSON lists an excluded video
            continue
        results.append(result.to_json())
        if timeline:
            write_timeline(result, timeline)
        if render:  # a window that did not decode has no labels to draw: the one before it stays up
            decoded = dataclasses.replace(result, windows=tuple(w for w in result.windows if w.error is None))
            with Reporter() as reporter:
                render_video(decoded, render, track(reporter, "render"))
        if not as_json:  # the JSON keeps the warnings
            print_warnings(result.warnings)
            print_prediction(result)
    if as_json:
        print_json(results)
    if failed:
        raise click.exceptions.Exit(1)


def failure_line(bad: BadVideo) -> str:
    """A video not scored, in one line: where the decoders ran (their messages are its details),
    it cannot be decoded; otherwise the file itself is the problem (missing, empty, a FIFO...)."""
    return f"sfcli: {bad.path}: " + (f"cannot be decoded ({bad.reason})" if bad.details else bad.reason)


def print_prediction(result: VideoPrediction):
    title = f"{result.video} ({result.seconds:.1f} s at {result.fps:.1f} fps)"
    print_table(title, [(i, p.label, f"{p.score:.3f}") for i, p in enumerate(result.predictions, 1)],
                ("#", "label", "probability"))
    if result.windows:
        print_table(f"{result.video}: per window", [
            (f"{w.start:.1f}-{w.end:.1f} s", f"cannot be decoded ({w.error})" if w.error else
             ", ".join(f"{p.label} {p.score:.2f}" for p in w.predictions[:3]))
            for w in result.windows
        ], ("window", "top labels"))


@click.command()
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

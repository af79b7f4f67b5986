"""`sfcli extract`: pooled features of videos, per window or per video, resumable."""

from __future__ import annotations

import click

from sfcli.cli.common import UserError, print_json, print_table, track
from sfcli.console import Reporter
from sfcli.extract import DTYPES, PATHWAYS


@click.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder of .npy files and index.jsonl.")
@click.option("--checkpoint", type=click.Path(), help="A run folder or a checkpoint of any layout sfcli reads.")
@click.option("--arch", help="Architecture of the checkpoint (default: recognised from the weights).")
@click.option("--window", type=click.FloatRange(min=0, min_open=True),
              help="Seconds per row [default: the network's clip span].")
@click.option("--stride", type=click.FloatRange(min=0, min_open=True), help="Seconds between rows [default: --window].")
@click.option("--per-video", is_flag=True, help="One row per video: the mean of its windows.")
@click.option("--pathway", type=click.Choice(PATHWAYS), default="both", show_default=True,
              help="Slow's channels, Fast's, or both (Slow first).")
@click.option("--dtype", type=click.Choice(DTYPES), default="float16", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--decoder", type=click.Choice(["auto", "decord", "pyav"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def extract(videos, out, checkpoint, arch, window, stride, per_video, pathway, dtype, device, decoder, as_json):
    """Features before the classifier for VIDEOS (files, folders, or dataset lists) into OUT:
    one (windows, dims) .npy per video and an index.jsonl; videos already done are skipped."""
    from sfcli.distributed import init_distributed, is_main_process
    from sfcli.extract import extract as extract_features
    from sfcli.predict import load_predictor

    if checkpoint is None:
        raise UserError("give --checkpoint")
    if stride is not None and window is None:
        raise UserError("--stride needs --window")
    predictor = load_predictor(checkpoint, arch, device=device)
    init_distributed(predictor.device)
    with Reporter() as reporter:
        summary = extract_features(predictor, videos, out, window, stride, per_video, pathway, dtype, decoder,
                                   track(reporter, "extract"))
    if not is_main_process():  # the summary is every process's
        return
    if as_json:
        print_json(summary.to_json())
    else:
        print_table(f"features of {summary.videos} videos -> {summary.out}", [
            ("extracted", summary.extracted), ("skipped (done before)", summary.skipped),
            ("failed", len(summary.failed)), ("rows written", summary.windows),
        ], ("", "value"))
    for video, reason in summary.failed:
        click.echo(f"sfcli: {video}: {reason}", err=True)
    if summary.failed:
        raise click.exceptions.Exit(1)

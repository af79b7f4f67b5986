"""`sfcli eval`: a checkpoint tested with the paper's multi-view protocol."""

from __future__ import annotations

import click

from sfcli.cli.common import data_options, parse_views, print_eval, print_json, split_data
from sfcli.distributed import is_main_process
from sfcli.evaluation import evaluate_checkpoint


@click.command("eval")
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

"""`sfcli eval`: a checkpoint tested with the paper's multi-view protocol, or saved scores
combined; eval.json, confusion.csv and confusion.png with --out, every video's scores with
--save-scores."""

from __future__ import annotations

import click

from sfcli.cli.common import (
    UserError,
    console,
    data_options,
    parse_views,
    print_eval,
    print_json,
    print_warnings,
    split_data,
)
from sfcli.distributed import is_main_process
from sfcli.errors import DataError
from sfcli.evaluation import combine_scores, evaluate_checkpoint, write_report, write_scores
from sfcli.predict import HEAD_POOLS


def optional_data(fn):
    return data_options(fn, required=False)


@click.command("eval")
@click.argument("score_files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--checkpoint", type=click.Path(), help="A run folder or a checkpoint file.")
@optional_data
@click.option("--arch", help="Architecture of a foreign checkpoint (sfcli checkpoints carry their own).")
@click.option("--views", default="10x3", show_default=True, help="CLIPSxCROPS per video.")
@click.option("--batch-size", type=click.IntRange(1), default=4, show_default=True, help="Videos per batch.")
@click.option("--scores", "combine", is_flag=True,
              help="Combine the score files given as arguments (their scores averaged) instead of running a network.")
@click.option("--save-scores", type=click.Path(dir_okay=False), help="Write every video's path, label and scores.")
@click.option("--out", type=click.Path(file_okay=False), help="Write eval.json, confusion.csv and confusion.png here.")
@click.option("--head-pool", type=click.Choice(HEAD_POOLS), default="reference", show_default=True,
              help="Views larger than the training crop: the reference's per-position head, or one global pool.")
def evaluate(score_files, checkpoint, data, prefix, labels, skip_missing, arch, views, batch_size, workers, device,
             decoder, as_json, combine, save_scores, out, head_pool):
    """Test a checkpoint with the paper's multi-view protocol (top-1, top-5, mean class accuracy,
    per-class precision/recall/F1, the confusion matrix), or combine saved scores: eval --scores A.json B.json."""
    if combine:
        if not score_files:
            raise UserError("--scores needs one or more score files written by --save-scores")
        if checkpoint or data:
            raise UserError("--scores combines saved scores: leave out --checkpoint and --data")
        result = combine_scores(list(score_files))
    else:
        if score_files:
            raise UserError(f"unexpected argument {score_files[0]!r}; to combine score files pass --scores")
        if not checkpoint or not data:
            raise UserError("eval needs --checkpoint and --data (or --scores FILES to combine saved scores)")
        data, _ = split_data(data, None)
        result = evaluate_checkpoint(checkpoint, data, views=parse_views(views), batch_size=batch_size,
                                     workers=workers, device=device, decoder=decoder, prefix=prefix, labels=labels,
                                     skip_missing=skip_missing, arch=arch, head_pool=head_pool)
    if not is_main_process():
        return
    written = []
    if save_scores:
        written.append(write_scores(save_scores, result.scores))
    if out:
        written += write_report(out, result)
    if as_json:  # the warnings are in the JSON
        print_json(result.to_json())
    else:
        print_warnings(result.warnings)
        print_eval(result.test)
        if written:
            console.print(f"written: {', '.join(map(str, written))}")
    if result.test.scored == 0:  # the reasons are in the table (or the JSON) above
        raise DataError(f"none of the {result.test.videos} videos could be decoded, so nothing was scored")

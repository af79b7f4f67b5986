"""`sfcli plot`: the loss and validation curves of one or several run folders on one figure."""

from __future__ import annotations

from dataclasses import dataclass

import click

from sfcli.cli.common import console, print_json, print_table
from sfcli.plots import plot_runs
from sfcli.runlog import validation_score
from sfcli.runs import RunSummary, read_run


@dataclass(frozen=True)
class RunCurves:
    """What the figure shows of one run."""

    run: str
    epochs: int  # finished
    steps: int  # step records (--log-every)
    last_loss: float | None
    metric: str  # of the validation curve: "top1", or "map" for multi-label data
    best_val: float | None
    best_epoch: int | None

    @classmethod
    def of(cls, run: RunSummary) -> RunCurves:
        validated = [h for h in run.history if validation_score(h) is not None]
        best = max(validated, key=validation_score, default=None)  # the first of equals, as best.pt
        loss = run.steps[-1].loss if run.steps else run.history[-1].loss if run.history else None
        metric = "map" if any(h.val_map is not None for h in run.history) else "top1"
        return cls(run.run, run.epochs_done, len(run.steps), loss, metric, best and validation_score(best),
                   best and best.epoch)

    def to_json(self) -> dict:
        return {"run": self.run, "epochs": self.epochs, "steps": self.steps, "last_loss": self.last_loss,
                "metric": self.metric, "best_val": self.best_val, "best_epoch": self.best_epoch}


@click.command("plot")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", default="curves.png", show_default=True, type=click.Path(dir_okay=False),
              help="The figure (PNG).")
@click.option("--json", "as_json", is_flag=True, help="Print what was drawn as JSON.")
def plot(runs, out, as_json):
    """Draw the training loss and validation top-1 (mAP for multi-label data) of one or several
    runs (sfcli train folders) on one figure."""
    summaries = [read_run(run) for run in runs]
    plot_runs(summaries, out)
    curves = [RunCurves.of(s) for s in summaries]
    if as_json:
        print_json({"out": out, "runs": [c.to_json() for c in curves]})
        return
    show = lambda v, fmt="": "-" if v is None else format(v, fmt)  # noqa: E731
    print_table(f"curves in {out}", [
        (c.run, c.epochs, c.steps, show(c.last_loss, ".4f"), f"{show(c.best_val, '.1f')} ({c.metric})",
         show(c.best_epoch)) for c in curves
    ], ("run", "epochs", "step records", "last loss", "best validation %", "at epoch"))
    console.print(f"written: {out}")

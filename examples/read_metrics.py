"""Read a run folder: its settings, the loss and accuracy of each epoch, the final test.

    python examples/read_metrics.py RUN

RUN is what `sfcli train --out RUN` (or examples/train_synthetic.py) wrote.
"""

import argparse

import sfcli


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder")
    args = parser.parse_args()

    run = sfcli.read_run(args.run)
    print(f"{run.arch}: {len(run.classes)} classes, {run.epochs_done} of {run.epochs} epochs")
    for epoch in run.history:
        val = "-" if epoch.val_top1 is None else f"{epoch.val_top1:.1f}%"
        print(f"  epoch {epoch.epoch:3d}  loss {epoch.loss:.4f}  lr {epoch.lr:.4f}  val top-1 {val}")
    if run.test is not None:
        print(f"final test: top-1 {run.test.top1:.1f}%, top-5 {run.test.top5:.1f}% over {run.test.scored} videos")


if __name__ == "__main__":
    main()

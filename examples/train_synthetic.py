"""Train a small SlowFast network on the built-in synthetic videos, from Python.

    python examples/train_synthetic.py [--out runs/example] [--epochs 3] [--per-class 12]

The same loop as `sfcli train`: a run folder with config.json, metrics.jsonl and checkpoint.pt;
running it again resumes (or, when finished, just reports).
"""

import argparse
from pathlib import Path

import sfcli


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example", help="run folder")
    parser.add_argument("--data", default="data/example-synth", help="where the synthetic videos are written")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=12, help="training videos per class")
    parser.add_argument("--crop", type=int, default=64)
    args = parser.parse_args()

    data = Path(args.data)
    if not (data / "train.csv").exists():
        sfcli.write_dataset(data, classes=4, train_per_class=args.per_class, val_per_class=4,
                            size=(args.crop, args.crop), frames=32)
    train_videos = sfcli.read_video_list(data / "train.csv")
    val_videos = sfcli.read_video_list(data / "val.csv", classes=train_videos.classes)

    arch = "slowfast_tiny"
    model_cfg = sfcli.build_config(arch, num_classes=len(train_videos.classes))
    clip = sfcli.clip_config(model_cfg, arch, crop=args.crop, views=(1, 1))
    recipe = sfcli.TrainConfig(epochs=args.epochs, batch_size=8, workers=0)
    result = sfcli.train(args.out, train_videos, model_cfg, clip, recipe, val_videos, arch)

    for epoch in result.history:
        print(f"epoch {epoch.epoch}: loss {epoch.loss:.3f}, val top-1 {epoch.val_top1:.1f}%")
    print(f"test top-1 {result.test.top1:.1f}% on {result.test.scored} videos; run folder {result.run}")


if __name__ == "__main__":
    main()

"""Score a video from Python: its top-5 labels, for the whole video and per 1-second window.

    python examples/score_video.py VIDEO --checkpoint RUN_OR_WEIGHTS
    python examples/score_video.py           # a synthetic video and an untrained slowfast_tiny

Any checkpoint `sfcli infer` reads works: a run folder, an sfcli file, PySlowFast or
PyTorchVideo weights.
"""

import argparse
import tempfile
from pathlib import Path

import sfcli


def demo_inputs(folder: Path) -> tuple[Path, Path]:
    """One synthetic video and an (untrained) slowfast_tiny saved as an sfcli checkpoint."""
    summary = sfcli.write_dataset(folder / "videos", classes=2, train_per_class=1, val_per_class=0,
                                  size=(64, 64), frames=60)
    video = next((folder / "videos" / "train").rglob("*.mp4"))
    model = sfcli.create_model("slowfast_tiny", num_classes=len(summary["classes"]))
    checkpoint = folder / "tiny.pt"
    sfcli.save_model(model, checkpoint, summary["classes"], arch="slowfast_tiny")
    return video, checkpoint


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", help="a video file (default: a synthetic one)")
    parser.add_argument("--checkpoint", help="a run folder or weights file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        video, checkpoint = (Path(args.video), args.checkpoint) if args.video else demo_inputs(Path(tmp))
        predictor = sfcli.load_predictor(checkpoint, views=(2, 1))
        result = sfcli.infer_video(predictor, video, top_k=5, window=1.0)

    print(f"{result.video}: {result.seconds:.1f} s at {result.fps:.0f} fps")
    for p in result.predictions:
        print(f"  {p.label:<20} {p.score:.3f}")
    for w in result.windows:
        print(f"  {w.start:4.1f}-{w.end:4.1f} s: {w.predictions[0].label} {w.predictions[0].score:.2f}")


if __name__ == "__main__":
    main()

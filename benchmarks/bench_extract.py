"""`sfcli extract` throughput against the plain way of getting the same features: the same clips
(decoded by sfcli's test_views, one per back-to-back window of the network's span, centre crop)
through `SlowFast.forward`'s own network with BN unfolded, up to its pooled features, in
torch.inference_mode. sfcli's row is `sfcli.extract.extract` end to end (decoding, the BN-folded
oneDNN network, writing the .npy files), on the same generated H.264 videos with the same random
weights. Clips per second are medians of --repeat runs, the two alternating.

Usage: python benchmarks/bench_extract.py [--arch slowfast_8x8_r50] [--crop 224] [--videos 2]
       [--seconds 10] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name
from rich.console import Console
from rich.table import Table

from sfcli import checkpoint as ck
from sfcli.data import test_views
from sfcli.decode import probe
from sfcli.extract import extract, network_span
from sfcli.files import save_checkpoint
from sfcli.infer import window_bounds
from sfcli.predict import load_predictor
from sfcli.presets import PRESETS, create_model
from sfcli.synth import encode, pick_codec, render
from sfcli.transforms import normalize


def plain_features(model, predictor, videos) -> int:
    """The same windows' clips through the unfused network; returns the clips run."""
    clip = dataclasses.replace(predictor.clip, num_clips=1, num_crops=1)
    span, clips = network_span(predictor), 0
    with torch.inference_mode():
        for path in videos:
            num_frames, fps = probe(path)
            for bounds in window_bounds(num_frames / fps, span, span):
                views = test_views(path, clip, seconds=bounds)[0]
                model.features(normalize(views, clip.mean, clip.std))
                clips += 1
    return clips


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="slowfast_8x8_r50", choices=list(PRESETS))
    parser.add_argument("--crop", type=int, default=224, help="Test crop (and short side) of the views.")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    rng = np.random.default_rng(0)
    videos = [folder / f"video{i}.mp4" for i in range(args.videos)]
    for path in videos:
        encode(path, render("ring", 256, 340, 30 * args.seconds, rng), 30, pick_codec())
    torch.manual_seed(0)
    model = create_model(args.arch).eval()
    clip = PRESETS[args.arch].clip_config(model.cfg)
    clip = dataclasses.replace(clip, test_short=args.crop, test_crop=args.crop)
    weights = save_checkpoint(folder / "weights.pt", ck.make_payload(model, ck.kinetics400_classes(), args.arch,
                                                                     clip=dataclasses.asdict(clip)))
    predictor = load_predictor(weights, device="cpu")
    runs = {"sfcli extract": [], "plain SlowFast.forward": []}
    for i in range(args.repeat + 1):  # the first round warms both up and is not counted
        start = time.perf_counter()
        summary = extract(predictor, videos, folder / f"out{i}")
        sfcli_rate = summary.windows / (time.perf_counter() - start)
        start = time.perf_counter()
        plain_rate = plain_features(model, predictor, videos) / (time.perf_counter() - start)
        if i:
            runs["sfcli extract"].append(sfcli_rate)
            runs["plain SlowFast.forward"].append(plain_rate)
    rates = {name: statistics.median(values) for name, values in runs.items()}
    ratio = rates["sfcli extract"] / rates["plain SlowFast.forward"]
    result = {"cpu": f"{cpu_name()}, {torch.get_num_threads()} threads", "arch": args.arch, "crop": args.crop,
              "clips": summary.windows, "clips_per_s": rates, "ratio": ratio}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{args.arch}, {args.crop}² views, {summary.windows} clips of {args.videos} videos, "
                        f"{result['cpu']}, median of {args.repeat}")
    for column in ("pipeline", "clips/s", "x plain"):
        table.add_column(column)
    for name, rate in rates.items():
        table.add_row(name, f"{rate:.2f}", f"{rate / rates['plain SlowFast.forward']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()

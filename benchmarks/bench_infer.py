"""`sfcli infer` end to end against a pipeline built the way PyTorchVideo's SlowFast tutorial
builds it, on the same generated 10-second 340x256 H.264 video, with the same weights and the
same 30 views (10 uniform clips x 3 crops of the 256 short side).

The reference pipeline: `EncodedVideo` (PyAV) `get_clip` for each clip's time window, the
tutorial's transforms from `pytorchvideo.transforms` (UniformTemporalSubsample to 32 frames,
Div255, Normalize, ShortSideScale), UniformCropVideo for the three crops, the tutorial's
PackPathway, and PyTorchVideo's `slowfast_r50` run on one view at a time, as the tutorial does.
sfcli: `load_tester` and `infer_video`, the library calls behind the command, on the same
weights moved into sfcli's layout. Each pipeline's seconds per video is the median of --repeat
runs, alternated.

Usage: python benchmarks/bench_infer.py [--crop 256] [--repeat 2] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms
import torchvision.transforms._functional_tensor
from rich.console import Console
from rich.table import Table

from sfcli import checkpoint as ck
from sfcli.data import MEAN, STD, ClipConfig, uniform_positions
from sfcli.engine import load_tester
from sfcli.infer import infer_video
from sfcli.model import SlowFast, build_config
from sfcli.synth import encode, pick_codec, render

# pytorchvideo.transforms imports torchvision's functional_tensor, renamed _functional_tensor in
# torchvision 0.17: the same module under its old name lets the real transforms import.
sys.modules.setdefault("torchvision.transforms.functional_tensor", torchvision.transforms._functional_tensor)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pytorchvideo's import uses the deprecated torch.jit.script
    from pytorchvideo import transforms as pvt
    from pytorchvideo.data.encoded_video import EncodedVideo
    from pytorchvideo.models import hub

ARCH = "slowfast_8x8_r50"  # PyTorchVideo's hub slowfast_r50
FPS, SECONDS, HEIGHT, WIDTH = 30, 10, 256, 340


def write_video(folder: Path) -> Path:
    path = folder / "ten_seconds.mp4"
    encode(path, render("ring", HEIGHT, WIDTH, FPS * SECONDS, np.random.default_rng(0)), FPS, pick_codec())
    return path


def twin_checkpoint(folder: Path, crop: int) -> tuple[torch.nn.Module, Path]:
    """PyTorchVideo's slowfast_r50 with random weights, and the same weights as an sfcli checkpoint."""
    cfg = build_config(ARCH)
    side = crop // 32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = hub.slowfast_r50(pretrained=False,
                                     head_pool_kernel_sizes=((cfg.frames, side, side), (cfg.fast_frames, side, side)))
    reference.eval()
    model = SlowFast(cfg)
    ck.load_weights(model, ck.pytorchvideo_to_sfcli(reference.state_dict()))
    clip = ClipConfig.for_model(cfg, crop=round(crop * 224 / 256), test_short=crop, test_crop=crop)
    path = folder / "sfcli.pt"
    ck.save_checkpoint(path, ck.make_payload(model, ck.kinetics400_classes(), ARCH, clip=dataclasses.asdict(clip)))
    return reference, path


# ----------------------------------------------------------------------------- the tutorial's way


def pack_pathway(fast: torch.Tensor, slow_frames: int) -> list[torch.Tensor]:
    """The tutorial's PackPathway: the Slow input is every alpha-th frame of the Fast one."""
    slow = fast.index_select(1, torch.linspace(0, fast.shape[1] - 1, slow_frames).long())
    return [slow[None], fast[None]]


def reference_pipeline(model, path: Path, crop: int, num_clips: int = 10, num_crops: int = 3) -> torch.Tensor:
    cfg = build_config(ARCH)
    transform = torchvision.transforms.Compose([
        pvt.UniformTemporalSubsample(cfg.fast_frames), pvt.Div255(), pvt.Normalize((MEAN,) * 3, (STD,) * 3),
        pvt.ShortSideScale(crop),
    ])
    crops = pvt.UniformCropVideo(crop)
    video = EncodedVideo.from_path(str(path), decode_audio=False)
    clip_seconds = cfg.fast_frames * cfg.fast_stride / FPS
    room = float(video.duration) - clip_seconds
    total = 0
    for position in uniform_positions(num_clips):
        start = room * position
        frames = transform(video.get_clip(start, start + clip_seconds)["video"])  # (C, T, H, W)
        for index in range(num_crops):
            fast = crops({"video": frames, "aug_index": index})["video"]
            with torch.no_grad():  # a fresh input list per call: the model overwrites it
                total = total + model(pack_pathway(fast, cfg.frames)).softmax(dim=1)[0]
    video.close()
    return total / (num_clips * num_crops)


# ----------------------------------------------------------------------------- measuring


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=256, help="test short side and crop (a multiple of 32)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = write_video(folder)
        reference, checkpoint = twin_checkpoint(folder, args.crop)
        predictor = load_tester(checkpoint, views="10x3", device="cpu")
        times = {"sfcli": [], "reference": []}
        for _ in range(args.repeat):
            began = time.perf_counter()
            ours = infer_video(predictor, path, top_k=5)
            times["sfcli"].append(time.perf_counter() - began)
            began = time.perf_counter()
            theirs = reference_pipeline(reference, path, args.crop)
            times["reference"].append(time.perf_counter() - began)
    classes = ck.kinetics400_classes()
    reference_top = [classes[i] for i in theirs.topk(5).indices]
    result = {
        "video": f"{SECONDS} s, {WIDTH}x{HEIGHT}, {FPS} fps, H.264", "views": "10x3", "crop": args.crop,
        "arch": ARCH, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "sfcli_s": round(statistics.median(times["sfcli"]), 2),
        "reference_s": round(statistics.median(times["reference"]), 2),
        "sfcli_top1": ours["predictions"][0]["label"], "reference_top1": reference_top[0],
        "top5_agree": [p["label"] for p in ours["predictions"]] == reference_top,
    }
    result["top1_agree"] = result["sfcli_top1"] == result["reference_top1"]
    result["ratio"] = round(result["reference_s"] / result["sfcli_s"], 2)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, args.crop)
    if not result["top1_agree"]:
        sys.exit("the two pipelines' top-1 labels differ")


def print_table(result: dict, crop: int):
    table = Table(title=f"sfcli infer vs the PyTorchVideo tutorial pipeline: {result['video']}, 10x3 views "
                        f"at {crop}², {ARCH}, {result['threads']} threads")
    for column in ("pipeline", "seconds per video", "top-1", "speed-up"):
        table.add_column(column)
    table.add_row("PyTorchVideo tutorial style", f"{result['reference_s']:.2f}", result["reference_top1"], "1.00x")
    table.add_row("sfcli infer", f"{result['sfcli_s']:.2f}", result["sfcli_top1"], f"{result['ratio']:.2f}x")
    Console().print(table)
    Console().print(f"top-1 agrees: {result['top1_agree']}; top-5 labels agree: {result['top5_agree']}")


if __name__ == "__main__":
    main()

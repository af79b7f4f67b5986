"""`sfcli infer` end to end against a pipeline built the way PyTorchVideo's SlowFast tutorial
builds it, on the same generated 10-second 340x256 H.264 video, with the same weights and the
same 30 views (10 uniform clips x 3 crops of the 256 short side).

Each pipeline runs as its own process, timed from start to exit, as a user runs it: the sfcli
row is the command `sfcli infer VIDEO --checkpoint sfcli.pt --views 10x3 --json`; the reference
row is this script in worker mode, which builds PyTorchVideo's `slowfast_r50`, loads the same
weights, and runs the tutorial's pipeline: `EncodedVideo` (PyAV) `get_clip` for each clip's time
window, the tutorial's transforms from `pytorchvideo.transforms` (UniformTemporalSubsample to 32
frames, Div255, Normalize, ShortSideScale), UniformCropVideo for the three crops, the tutorial's
PackPathway, and the network on one view at a time with autograd on, as the tutorial calls it
(no `torch.no_grad`). Two more reference rows show what the tutorial leaves on the table: the same
under `torch.no_grad`, and that with sfcli's allocator setting (`devices.keep_freed_memory`) as
well. Seconds per video are medians of --repeat runs, the pipelines alternating.

Usage: python benchmarks/bench_infer.py [--crop 256] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms
import torchvision.transforms._functional_tensor
from machine import conv_peak_gflops, cpu_name
from rich.console import Console
from rich.table import Table

from sfcli import checkpoint as ck
from sfcli.cost import count_gflops
from sfcli.files import save_checkpoint
from sfcli.layouts import translate
from sfcli.model import SlowFast
from sfcli.presets import PRESETS, build_config
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
VIEWS = 30  # 10 clips x 3 crops, all distinct in a 10-second video
FPS, SECONDS, HEIGHT, WIDTH = 30, 10, 256, 340


def write_video(folder: Path) -> Path:
    path = folder / "ten_seconds.mp4"
    encode(path, render("ring", HEIGHT, WIDTH, FPS * SECONDS, np.random.default_rng(0)), FPS, pick_codec())
    return path


def twin_checkpoint(folder: Path, crop: int) -> tuple[torch.nn.Module, Path]:
    """PyTorchVideo's slowfast_r50 with random weights, and the same weights as an sfcli checkpoint."""
    cfg = build_config(ARCH)
    reference = reference_model(crop)
    model = SlowFast(cfg)
    ck.load_weights(model, translate(reference.state_dict(), "pytorchvideo", "sfcli"))
    clip = dataclasses.replace(PRESETS[ARCH].clip_config(cfg, round(crop * 224 / 256)), test_short=crop, test_crop=crop)
    path = folder / "sfcli.pt"
    save_checkpoint(path, ck.make_payload(model, ck.kinetics400_classes(), ARCH, clip=dataclasses.asdict(clip)))
    return reference, path


# ----------------------------------------------------------------------------- the tutorial's way


def pack_pathway(fast: torch.Tensor, slow_frames: int) -> list[torch.Tensor]:
    """The tutorial's PackPathway: the Slow input is every alpha-th frame of the Fast one."""
    slow = fast.index_select(1, torch.linspace(0, fast.shape[1] - 1, slow_frames).long())
    return [slow[None], fast[None]]


def reference_pipeline(model, path: Path, crop: int, no_grad: bool, num_clips: int = 10,
                       num_crops: int = 3) -> torch.Tensor:
    preset = PRESETS[ARCH]
    cfg = preset.model
    transform = torchvision.transforms.Compose([
        pvt.UniformTemporalSubsample(cfg.fast_frames), pvt.Div255(),
        pvt.Normalize((preset.mean,) * 3, (preset.std,) * 3), pvt.ShortSideScale(crop),
    ])
    crops = pvt.UniformCropVideo(crop)
    video = EncodedVideo.from_path(str(path), decode_audio=False)
    clip_seconds = cfg.fast_frames * cfg.fast_stride / FPS
    room = float(video.duration) - clip_seconds
    total = 0
    for position in ([0.5] if num_clips == 1 else [i / (num_clips - 1) for i in range(num_clips)]):
        start = room * position
        frames = transform(video.get_clip(start, start + clip_seconds)["video"])  # (C, T, H, W)
        for index in range(num_crops):
            fast = crops({"video": frames, "aug_index": index})["video"]
            with torch.set_grad_enabled(not no_grad):  # a fresh input list per call: the model overwrites it
                total = total + model(pack_pathway(fast, cfg.frames)).softmax(dim=1)[0].detach()
    video.close()
    return total / (num_clips * num_crops)


# ----------------------------------------------------------------------------- measuring

PIPELINES = {"reference": "PyTorchVideo tutorial style", "reference+no_grad": "same, under torch.no_grad",
             "reference+no_grad+alloc": "same, and sfcli's allocator setting", "sfcli": "sfcli infer"}


def reference_worker(folder: Path, crop: int, no_grad: bool, keep_freed_memory: bool) -> None:
    """The reference pipeline as a process of its own: its top-5 class indices on stdout."""
    if keep_freed_memory:
        from sfcli.devices import keep_freed_memory as keep
        keep()
    reference = reference_model(crop)
    reference.load_state_dict(torch.load(folder / "reference.pt", weights_only=True))
    probabilities = reference_pipeline(reference, folder / "ten_seconds.mp4", crop, no_grad)
    print(json.dumps(probabilities.topk(5).indices.tolist()))


def reference_model(crop: int) -> torch.nn.Module:
    cfg, side = build_config(ARCH), crop // 32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hub.slowfast_r50(pretrained=False,
                                head_pool_kernel_sizes=((cfg.frames, side, side), (cfg.fast_frames, side, side))).eval()


def timed(command: list[str]) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=256, help="test short side and crop (a multiple of 32)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--reference-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-grad", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep-freed-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_worker:
        return reference_worker(args.reference_worker, args.crop, args.no_grad, args.keep_freed_memory)
    torch.manual_seed(0)
    classes = ck.kinetics400_classes()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video = write_video(folder)
        reference, checkpoint = twin_checkpoint(folder, args.crop)
        torch.save(reference.state_dict(), folder / "reference.pt")
        worker = [sys.executable, __file__, "--reference-worker", str(folder), "--crop", str(args.crop)]
        commands = {
            "reference": worker,
            "reference+no_grad": worker + ["--no-grad"],
            "reference+no_grad+alloc": worker + ["--no-grad", "--keep-freed-memory"],
            "sfcli": [sys.executable, "-m", "sfcli", "infer", str(video), "--checkpoint", str(checkpoint),
                      "--views", "10x3", "--device", "cpu", "--json"],
        }
        times, top5 = {name: [] for name in commands}, {}
        for _ in range(args.repeat):
            for name, command in commands.items():
                seconds, out = timed(command)
                times[name].append(seconds)
                result = json.loads(out)
                top5[name] = ([p["label"] for p in result[0]["predictions"]] if name == "sfcli"
                              else [classes[i] for i in result])
    seconds = {name: round(statistics.median(t), 2) for name, t in times.items()}
    # The network's FLOPs for 30 views (a multiply-add is 2), per second of the whole run.
    flops = 2 * count_gflops(build_config(ARCH), args.crop) * VIEWS
    peak = conv_peak_gflops(torch.device("cpu"))
    result = {
        "cpu": cpu_name(), "conv_peak_gflops": round(peak),
        "gflops": {name: round(flops / s) for name, s in seconds.items()},
        "peak_fraction": {name: round(flops / s / peak, 3) for name, s in seconds.items()},
        "video": f"{SECONDS} s, {WIDTH}x{HEIGHT}, {FPS} fps, H.264", "views": "10x3", "crop": args.crop,
        "arch": ARCH, "threads": torch.get_num_threads(), "torch": torch.__version__, "seconds": seconds,
        "ratio": round(seconds["reference"] / seconds["sfcli"], 2), "top5": top5,
        "top1_agree": len({labels[0] for labels in top5.values()}) == 1,
        "top5_agree": len({tuple(labels) for labels in top5.values()}) == 1,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, args.crop)
    if not result["top1_agree"]:
        sys.exit("the pipelines' top-1 labels differ")


def print_table(result: dict, crop: int):
    table = Table(title=f"sfcli infer vs the PyTorchVideo tutorial pipeline, each a process of its own: "
                        f"{result['video']}, 10x3 views at {crop}², {ARCH}, {result['cpu']}, "
                        f"{result['threads']} threads")
    for column in ("pipeline", "seconds per video", "top-1", "speed-up", "network GFLOP/s", "of conv peak"):
        table.add_column(column)
    for name, label in PIPELINES.items():
        seconds = result["seconds"][name]
        speedup = result["seconds"]["reference"] / seconds
        table.add_row(label, f"{seconds:.2f}", result["top5"][name][0], f"{speedup:.2f}x",
                      str(result["gflops"][name]), f"{result['peak_fraction'][name]:.0%}")
    console = Console()
    if not console.is_terminal:  # a pipe or a file: print the table whole, not squeezed to 80 columns
        console = Console(width=200)
    console.print(table)
    console.print(f"top-1 agrees: {result['top1_agree']}; top-5 labels agree: {result['top5_agree']}; conv peak "
                    f"(machine.conv_peak_gflops) {result['conv_peak_gflops']} GFLOP/s; network GFLOP/s: the 30 views' "
                    "FLOPs over the whole run's seconds (start, decoding and loading included)")


if __name__ == "__main__":
    main()

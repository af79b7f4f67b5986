"""Where a training step of the built-in benchmark goes: slowfast_tiny (or --pathway slow/fast)
at its built-in settings (48² crops of the 64×64 synthetic videos, batch 16), profiled with
torch.profiler and summed by kind of operator (self CPU time), and the time the loop waits for
its next batch, with the videos decoded every epoch (2 loader processes, as before the frame
cache) and with the frames in memory (sfcli's default on small datasets, no loader processes).

Usage: python benchmarks/profile_step.py [--pathway slowfast] [--steps 12] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch
from machine import conv_peak_gflops, counted_flops, cpu_name
from rich.console import Console
from rich.table import Table
from torch.profiler import ProfilerActivity, profile

from sfcli.ablate import BUILTIN_ARCH, builtin_dataset
from sfcli.data import VideoDataset, collate
from sfcli.framecache import FrameCache
from sfcli.model import SlowFast
from sfcli.presets import build_config, clip_config
from sfcli.recipe import TrainConfig, make_optimizer
from sfcli.transforms import normalize
from sfcli.videolist import read_video_list

# Operator names (self time) by kind; the rest is counted as "other".
KINDS = {
    "convolution, forward": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution"),
    "convolution, backward": ("aten::convolution_backward",),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::_batch_norm_impl_index"),
    "ReLU": ("aten::relu_", "aten::clamp_min_", "aten::threshold_backward", "aten::relu"),
    "copies and weight reorders": ("aten::copy_", "aten::to_mkldnn", "aten::mkldnn_reorder_conv3d_weight",
                                   "aten::contiguous", "aten::clone", "aten::cat"),
    "pooling": ("aten::max_pool3d_with_indices", "aten::max_pool3d_with_indices_backward", "aten::mean",
                "aten::avg_pool3d", "aten::avg_pool3d_backward", "aten::adaptive_avg_pool3d"),
    "optimizer": ("aten::_fused_sgd_", "Optimizer.step#SGD.step", "Optimizer.zero_grad#SGD.zero_grad"),
}


def loader_wait(dataset: VideoDataset, workers: int, steps: int, step) -> tuple[float, float]:
    """(seconds waiting for batches, seconds in steps) over `steps` steps of a real loader."""
    batches = [list(range(i * 16, (i + 1) * 16)) for i in range(steps)]
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate)
    waited = computed = 0.0
    began = time.perf_counter()
    for batch in loader:
        got = time.perf_counter()
        waited += got - began
        step(batch)
        began = time.perf_counter()
        computed += began - got
    return waited, computed


def compile_cost(step, batch, steps: int) -> dict:
    """Seconds torch.compile takes before its first step, and the step's time eager and compiled."""
    def timed(fn, n):
        began = time.perf_counter()
        for _ in range(n):
            fn(batch)
        return (time.perf_counter() - began) / n

    eager = timed(step, steps)
    fast = torch.compile(step)
    first = timed(fast, 1)
    return {"compile_s": first, "eager_step_ms": 1000 * eager, "compiled_step_ms": 1000 * timed(fast, steps)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pathway", default="slowfast", choices=["slowfast", "slow", "fast"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--top", type=int, default=5, help="the heaviest single ops (with their input shapes)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the step")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    root = builtin_dataset()
    videos = read_video_list(root / "train.csv")
    cfg = build_config(BUILTIN_ARCH, pathway=args.pathway, num_classes=len(videos.classes))
    clip = clip_config(cfg, BUILTIN_ARCH)
    torch.manual_seed(0)
    model = SlowFast(cfg).train()
    optimizer = make_optimizer(model, TrainConfig())

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(normalize(batch["clip"], clip.mean, clip.std)), batch["label"])
        loss.backward()
        optimizer.step()

    first = collate([VideoDataset(videos, clip, train=True)[i] for i in range(16)])
    for _ in range(3):
        step(first)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.steps):
            step(first)
    times = defaultdict(float)
    for event in prof.key_averages():
        kind = next((k for k, names in KINDS.items() if event.key in names), "other")
        times[kind] += event.self_cpu_time_total / 1e6 / args.steps
    step_seconds = sum(times.values())
    by_shape = sorted(prof.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    heaviest = [{"op": e.key, "input_shapes": [s for s in e.input_shapes if s][:3],
                 "ms": e.self_cpu_time_total / 1e3 / args.steps} for e in by_shape[: args.top]]

    compiled = compile_cost(step, first, args.steps) if args.compile else None
    # The step's convolutions and matrix products against the machine: their FLOPs (forward and
    # backward) over the profiled step's time, and that as a fraction of the CPU's conv peak.
    step_gflops = counted_flops(lambda: step(first)) / step_seconds / 1e9
    peak = conv_peak_gflops(torch.device("cpu"))

    paths = videos.paths[: 16 * args.steps]
    cache = FrameCache.build(paths, "auto", budget_mb=4096)
    waits = {}
    for name, decoder, workers in (("decoded every epoch, 2 loader processes", "auto", 2),
                                   ("frames in memory, no loader processes", cache, 0)):
        waited, computed = loader_wait(VideoDataset(videos, clip, train=True, decoder=decoder), workers,
                                       args.steps, step)
        waits[name] = {"wait_per_step_ms": 1000 * waited / args.steps, "step_ms": 1000 * computed / args.steps}

    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "pathway": args.pathway, "crop": clip.crop,
              "frames": clip.frames, "batch": 16, "profiled_step_ms": 1000 * step_seconds,
              "kinds_ms": {k: 1000 * v for k, v in sorted(times.items(), key=lambda kv: -kv[1])},
              "heaviest_ops": heaviest, "loader": waits, "compile": compiled,
              "step_gflops": step_gflops, "conv_peak_gflops": peak}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{result['cpu']}, {result['threads']} threads: {BUILTIN_ARCH} ({args.pathway}) training "
                        f"step, batch 16, {clip.frames} frames at {clip.crop}², mean of {args.steps} profiled steps")
    for column in ("kind", "ms per step", "share"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, ms in result["kinds_ms"].items():
        table.add_row(kind, f"{ms:.1f}", f"{ms / result['profiled_step_ms']:.0%}")
    table.add_row("all (profiled)", f"{result['profiled_step_ms']:.1f}", "100%")
    ops = Table(title=f"the {args.top} heaviest ops (self time) and their first input shapes")
    for column in ("op", "input shapes", "ms per step", "share"):
        ops.add_column(column, justify="right" if column in ("ms per step", "share") else "left")
    for op in heaviest:
        ops.add_row(op["op"], " ".join(str(tuple(s)) for s in op["input_shapes"]), f"{op['ms']:.1f}",
                    f"{op['ms'] / result['profiled_step_ms']:.0%}")
    loader = Table(title="the same steps fed by the real loader")
    for column in ("frames from", "wait for batch ms/step", "step ms", "both ms", "speed-up"):
        loader.add_column(column, justify="left" if column == "frames from" else "right")
    reference = None
    for name, w in waits.items():
        both = w["wait_per_step_ms"] + w["step_ms"]
        reference = reference or both
        loader.add_row(name, f"{w['wait_per_step_ms']:.1f}", f"{w['step_ms']:.1f}", f"{both:.1f}",
                       f"{reference / both:.2f}x")
    console = Console(width=160)
    console.print(table)
    console.print(ops)
    console.print(loader)
    console.print(f"the step's convolutions and matrix products: {step_gflops:.0f} GFLOP/s over the whole step, "
                  f"{step_gflops / peak:.0%} of this CPU's conv peak ({peak:.0f} GFLOP/s, machine.conv_peak_gflops)")
    if compiled:
        eager, fast = compiled["eager_step_ms"], compiled["compiled_step_ms"]
        payback = (f"it pays for itself after {compiled['compile_s'] * 1000 / (eager - fast):.0f} steps"
                   if eager > fast else "no faster")
        console.print(f"torch.compile: {compiled['compile_s']:.1f} s before the first step; a step {eager:.1f} ms "
                      f"eager, {fast:.1f} ms compiled ({eager / fast:.2f}x): {payback}")

if __name__ == "__main__":
    main()

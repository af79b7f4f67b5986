"""Forward and backward of a narrow pathway's conv1 (5x7x7, spatial stride 2, over the RGB clip)
three ways: torch's Conv3d on an NCDHW clip and on an NDHWC one, and as one 2D conv over the
frames with every temporal tap as output channels (FrameTapsConv3d).

The shapes are the built-in benchmark's training step (slowfast_tiny, batch 16, 32 frames at
40²) for 1, 2, 4 and 8 output channels (its Fast stem has 2; Table 5b's channel ratios give the
others). The clip needs no gradient, as a stem's input; the three run alternately, and each time
is the median of --iters calls after 2 warm-up calls. The last column is what
`sfcli.memory_formats.stem_conv` picks on this CPU (the network's conv1 of 8 or more channels
gets an NDHWC clip, of fewer an NCDHW one).

Usage: python benchmarks/bench_stem_conv.py [--batch 16] [--frames 32] [--crop 40] [--iters 10] [--json]
       (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 in front: the AVX2 kernels)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from machine import cpu_name
from rich.console import Console
from rich.table import Table
from torch import nn

from sfcli.memory_formats import FrameTapsConv3d, stem_conv

WAYS = {  # name: (conv class, the clip's memory format)
    "Conv3d NCDHW": (nn.Conv3d, torch.contiguous_format),
    "Conv3d NDHWC": (nn.Conv3d, torch.channels_last_3d),
    "FrameTapsConv3d": (FrameTapsConv3d, torch.contiguous_format),
}


def time_ways(c_out: int, args) -> dict[str, float]:
    """Median milliseconds of forward + backward of each way, alternating."""
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.frames, args.crop, args.crop)
    convs = {name: make(3, c_out, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
             for name, (make, _) in WAYS.items()}
    for conv in convs.values():
        conv.load_state_dict(convs["Conv3d NCDHW"].state_dict())
    grad = torch.randn_like(convs["Conv3d NCDHW"](x))
    times = {name: [] for name in convs}
    for i in range(args.iters + 2):
        for name, conv in convs.items():
            clip = x.contiguous(memory_format=WAYS[name][1])
            start = time.perf_counter()
            conv(clip).backward(grad)
            conv.weight.grad = None
            if i >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--crop", type=int, default=40)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for c_out in (1, 2, 4, 8):
        ms = time_ways(c_out, args)
        rows.append({"out_channels": c_out, "ms": ms, "picked": stem_conv(c_out, 5).__name__,
                     "taps_speedup": ms["Conv3d NCDHW"] / ms["FrameTapsConv3d"]})
    cpu = f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"
    if args.json:
        print(json.dumps({"cpu": cpu, "settings": vars(args), "rows": rows}, indent=2))
        return
    table = Table(title=f"{cpu}: conv1 5x7x7 over a {args.batch}x3x{args.frames}x{args.crop}² clip, "
                        f"forward + backward ms, median of {args.iters}")
    for column in ("out channels", *WAYS, "NCDHW / taps", "stem_conv picks"):
        table.add_column(column, justify="right" if column != "stem_conv picks" else "left")
    for row in rows:
        table.add_row(str(row["out_channels"]), *(f"{row['ms'][name]:.1f}" for name in WAYS),
                      f"{row['taps_speedup']:.2f}x", row["picked"])
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

"""The processor a benchmark ran on, named in every table it prints, and the convolution rate
it reaches at best: the yardstick that each benchmark's figures are a fraction of."""

import functools
import platform
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

# Convs of the R50 Slow pathway's res4 and res5 at batch 4: wide, NDHWC, the shapes a CPU's
# convolution kernels run fastest among the network's own.
PEAK_CONVS = (  # (in channels, out channels, kernel, (T, H, W) of the input)
    (256, 256, (1, 3, 3), (8, 16, 16)),
    (1024, 256, (3, 1, 1), (8, 16, 16)),
    (512, 2048, (1, 1, 1), (8, 8, 8)),
)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer reads the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def counted_flops(run) -> int:
    """FLOPs (a multiply-add is 2) of the convolutions and matrix products that `run()` executes,
    forward and backward, as torch's FlopCounterMode counts them."""
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return counter.get_total_flops()


def conv_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32, batch: int = 4,
                     repeats: int = 5) -> float:
    """The best GFLOP/s of PEAK_CONVS' forward passes under inference_mode, each the best of
    `repeats` after a warm-up: the rate this device's convolution kernels reach on this
    network's friendliest shapes, measured in the same process as the figures beside it."""
    best = 0.0
    g = torch.Generator().manual_seed(0)
    for c_in, c_out, kernel, size in PEAK_CONVS:
        x = torch.randn(batch, c_in, *size, generator=g).to(device, dtype, memory_format=torch.channels_last_3d)
        w = torch.randn(c_out, c_in, *kernel, generator=g).to(device, dtype, memory_format=torch.channels_last_3d)
        conv = functools.partial(F.conv3d, x, w, padding=tuple(k // 2 for k in kernel))
        with torch.inference_mode():
            flops = counted_flops(conv)
            for i in range(repeats + 1):
                synchronize(device)
                start = time.perf_counter()
                conv()
                synchronize(device)
                if i:  # the first call is the warm-up
                    best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best

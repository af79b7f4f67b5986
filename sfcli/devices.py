"""Where a process computes and in what precision: the device, mixed precision where the hardware
has it, and the allocator setting the CLI runs with."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import sys

import torch

from sfcli.errors import TrainingError

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA when present. Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if name not in ("auto", "cpu", "cuda"):
        raise TrainingError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def autocast(device: torch.device, amp: bool):
    """Mixed precision on CUDA (bf16 where the GPU has it, else fp16) and on CPUs with native bf16
    (AVX512-BF16 or AMX); float32 elsewhere, since other CPUs only get slower with it."""
    if amp and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())):
        return torch.autocast(device.type, dtype=amp_dtype(device))
    return contextlib.nullcontext()


def amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether oneDNN reports native bf16 on this CPU. The query is a private torch op, so its
    first use also checks a small bf16 matmul against float32; any exception or mismatch means
    False (with a debug note), and the CPU then trains in float32."""
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        a = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            product = a @ a
        if product.dtype != torch.bfloat16 or not torch.allclose(product.float(), a @ a, rtol=0.05, atol=0.5):
            log.debug("bf16 matmul disagrees with float32 on this CPU: using float32")
            return False
        return True
    except Exception as err:  # a private op: whatever it raises, float32 is the safe answer
        log.debug("oneDNN bf16 query failed (%s): using float32", err)
        return False


def keep_freed_memory() -> bool:
    """Have glibc's malloc serve every allocation from its heap and keep what is freed, for this
    process. By default each block above 32 MB (a 256² clip's activations are many) gets fresh
    pages from the kernel, which zeroes them on first touch, and returns them when freed: a third
    of `sfcli infer`'s time at 256² views went there (measured). The cost is that the process
    keeps its peak memory until it exits. False where the C library is not glibc."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):
        return False

"""Which memory format each part of the network computes in. Nothing here changes what a layer
computes, only how its tensors lie in memory; every choice was measured on the CPU (the figures
are in benchmarks/README.md, "On AVX2 kernels")."""

from __future__ import annotations

import torch
from torch import nn


def avx2_kernels() -> bool:
    """Whether torch's CPU kernels here are its AVX2 ones (a CPU without AVX-512, or
    ATEN_CPU_CAPABILITY=avx2)."""
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


def pathway_memory_format(width: int) -> torch.memory_format:
    """NDHWC (channels_last_3d): oneDNN and cuDNN run 3D convs and BN faster so, the R50 Fast
    pathway (8 to 256 channels) most of all. A pathway of 2 to 4 channels (slowfast_tiny's Fast
    one) runs faster NCDHW, its batch norms most of all."""
    return torch.channels_last_3d if width >= 8 else torch.contiguous_format


def stem_conv_format(width: int) -> torch.memory_format | None:
    """The format conv1 of a pathway computes in where it is not the pathway's own, else None: on
    AVX2 kernels the conv1 over RGB of an NCDHW (narrow) pathway, the 5x7x7 Fast stem, runs twice as
    fast NDHWC while the rest of its pathway stays faster NCDHW."""
    narrow = pathway_memory_format(width) == torch.contiguous_format
    return torch.channels_last_3d if narrow and avx2_kernels() else None


class FormatConv3d(nn.Conv3d):
    """A Conv3d that computes in `memory_format` and returns its output in its input's format:
    the same function and the same parameters (and state-dict keys) as the plain conv."""

    def __init__(self, *args, memory_format: torch.memory_format, **kwargs):
        super().__init__(*args, **kwargs)
        self.memory_format = memory_format

    def forward(self, x):
        ndhwc = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)
        y = super().forward(x.contiguous(memory_format=self.memory_format))
        return y.contiguous(memory_format=torch.channels_last_3d if ndhwc else torch.contiguous_format)

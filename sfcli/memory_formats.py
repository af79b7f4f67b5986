"""How parts of the network compute: which memory format each runs in, and which conv1 runs as
2D convs over frames. Nothing here changes what a layer computes, only how; every choice was
measured on the CPU (the figures are in benchmarks/README.md, "conv1 of a narrow pathway")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pathway_memory_format(width: int) -> torch.memory_format:
    """NDHWC (channels_last_3d): oneDNN and cuDNN run 3D convs and BN faster so, the R50 Fast
    pathway (8 to 256 channels) most of all. A pathway of 2 to 4 channels (slowfast_tiny's Fast
    one) runs faster NCDHW, its batch norms most of all."""
    return torch.channels_last_3d if width >= 8 else torch.contiguous_format


def stem_conv(c_out: int, temporal_kernel: int) -> type[nn.Conv3d]:
    """The conv class of a pathway's conv1 (t x 7 x 7 over the clip, spatial stride 2). oneDNN's 3D
    conv with a few output channels (slowfast_tiny's Fast stem: 2) is slow both ways, its weight
    gradient most of all, so a narrow pathway's conv1 runs as one 2D conv of t * c_out channels."""
    narrow = pathway_memory_format(c_out) == torch.contiguous_format
    return FrameTapsConv3d if narrow and temporal_kernel > 1 else nn.Conv3d


class FrameTapsConv3d(nn.Conv3d):
    """A Conv3d of temporal stride 1 computed as one 2D conv over all frames whose output channels
    are every temporal tap's (kernel t: t * c_out of them), the taps' outputs then shifted in time
    and summed: the same function and the same parameters (and state-dict keys) as the plain conv.
    The output is in its input's memory format."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.stride[0] != 1 or self.dilation != (1, 1, 1) or self.groups != 1 or self.padding_mode != "zeros":
            raise ValueError("FrameTapsConv3d needs temporal stride 1, no dilation, one group and zero padding")

    def forward(self, x):
        n, c, t, h, w = x.shape
        taps, c_out = self.kernel_size[0], self.out_channels
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)
        kernels = self.weight.permute(2, 0, 1, 3, 4).reshape(taps * c_out, c, *self.kernel_size[1:])
        z = F.conv2d(frames, kernels, stride=self.stride[1:], padding=self.padding[1:])
        y = SumShiftedTaps.apply(z.reshape(n, t, taps, c_out, *z.shape[-2:]), self.padding[0])
        if self.bias is not None:
            y = y + self.bias.view(c_out, 1, 1)
        ndhwc = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)
        return y.transpose(1, 2).contiguous(memory_format=torch.channels_last_3d if ndhwc else torch.contiguous_format)


def output_frames(t: int, taps: int, pad: int) -> int:
    """Frames out of a temporal-stride-1 conv of `taps` frames padded by `pad` on each side."""
    return t + 2 * pad - taps + 1


def tap_frames(t: int, taps: int, pad: int, k: int) -> tuple[slice, slice]:
    """(output frames, input frames) that temporal tap k joins, at temporal stride 1."""
    lo = max(0, pad - k)
    hi = max(lo, min(output_frames(t, taps, pad), t + pad - k))  # empty where the tap meets no frame (t < pad)
    return slice(lo, hi), slice(lo + k - pad, hi + k - pad)


class SumShiftedTaps(torch.autograd.Function):
    """y[:, i] = sum over k of z[:, i + k - pad, k], frames outside z counting as zeros: a 1D conv
    in time whose kernel picks tap k's output. Written out because autograd's backward of the same
    sum of slices zero-fills a tensor of z's size for every tap."""

    @staticmethod
    def forward(ctx, z, pad):
        n, t, taps = z.shape[:3]
        y = z.new_zeros(n, output_frames(t, taps, pad), *z.shape[3:])
        for k in range(taps):
            out, inp = tap_frames(t, taps, pad, k)
            y[:, out] += z[:, inp, k]
        ctx.pad, ctx.z_shape = pad, z.shape
        return y

    @staticmethod
    def backward(ctx, grad_y):
        grad_z = grad_y.new_zeros(ctx.z_shape)
        t, taps = ctx.z_shape[1:3]
        for k in range(taps):
            out, inp = tap_frames(t, taps, ctx.pad, k)
            grad_z[:, inp, k] = grad_y[:, out]
        return grad_z, None

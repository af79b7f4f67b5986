"""The inference network: `fuse_bn` folds every BN into its conv and runs conv + ReLU (+ the
residual sum) as one oneDNN call where this torch's private post-op convolutions pass a self-check."""

from __future__ import annotations

import copy
import functools
import itertools
import logging

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from sfcli.model import Bottleneck, ConvBN, SlowFast

log = logging.getLogger(__name__)


@functools.cache
def onednn_post_ops() -> bool:
    """Whether oneDNN's fused conv + pointwise ops (what torch.compile's CPU backend calls) work
    here. They are private to torch, so their first use checks them against F.conv3d on a small
    input -- a 3D conv with its ReLU, a 2D one adding into its residual -- and any error or
    mismatch turns them off for this process."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        rng = torch.Generator().manual_seed(0)
        x = torch.randn(2, 4, 3, 6, 6, generator=rng).contiguous(memory_format=torch.channels_last_3d)
        weight, bias = torch.randn(8, 4, 3, 3, 3, generator=rng), torch.randn(8, generator=rng)
        residual = torch.randn(2, 8, 6, 6, generator=rng)
        with torch.no_grad():
            expected = F.relu(F.conv3d(x, weight, bias, (1, 2, 2), 1))
            got = torch.ops.mkldnn._convolution_pointwise(x, weight, bias, (1, 1, 1), (1, 2, 2), (1, 1, 1), 1,
                                                         "relu", [], "")
            expected_2d = F.relu(F.conv3d(x[:, :, :1], weight[:, :, :1], bias, 1, (0, 1, 1))[:, :, 0] + residual)
            got_2d = torch.ops.mkldnn._convolution_pointwise_.binary(residual.clone(), x[:, :, 0], weight[:, :, 0],
                                                                      bias, (1, 1), (1, 1), (1, 1), 1, "add", 1.0,
                                                                      "relu", [], "")
        ok = torch.allclose(got, expected, rtol=1e-4, atol=1e-4) and torch.allclose(got_2d, expected_2d,
                                                                                   rtol=1e-4, atol=1e-4)
    except Exception as e:  # a private op: any failure means the plain path
        log.debug("oneDNN post-op convolutions off: %s: %s", type(e).__name__, e)
        return False
    if not ok:
        log.debug("oneDNN post-op convolutions off: they disagree with F.conv3d")
    return ok


class FusedConv3d(nn.Conv3d):
    """An inference conv with its BN folded in (as a bias) and the ReLU after it, or for the last
    conv of a residual block the shortcut's addition and the ReLU. On the CPU in float32 without
    autograd, oneDNN runs them as post-ops of the convolution: one pass over the output instead
    of three (6% of an R50 forward pass at 256², measured), the sum accumulated into the
    shortcut's own memory (no new tensor the size of the block's output: 15-40% faster for those
    convs, measured). There a conv with no spatial extent (t x 1 x 1) runs as the same 2D conv
    over (time, height * width), and one with no temporal extent (1 x k x k) on an NDHWC clip as
    the same 2D conv over its batch of frames: oneDNN's 2D kernels run these shapes faster (5-25%
    for temporal convs, 2-4% of the network for the frame-wise ones, measured). Elsewhere, the
    same ops one by one, as always with onednn=False (a plain conv for export: sfcli.export)."""

    def __init__(self, conv: nn.Conv3d, bn: nn.BatchNorm3d, relu: bool, onednn: bool = True):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, bias=True, device="meta")
        self.weight, self.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                      bn.eps, bn.weight, bn.bias)
        self.relu, self.onednn = relu, onednn
        self.temporal_only = self.kernel_size[1:] == (1, 1) and self.stride[1:] == (1, 1)
        self.frame_wise = self.kernel_size[0] == 1 and self.stride[0] == 1
        # A narrow conv (the Fast stem's 8 channels half fill an AVX-512 register) computes two
        # neighbouring output columns as 2C channels: its kernel twice, one stride apart, in a
        # conv of twice the stride. Its NDHWC output is the original's memory, value for value.
        self.register_buffer("paired", None, persistent=False)
        if onednn and self.out_channels <= 8 and self.groups == 1 and self.dilation == (1, 1, 1) \
                and self.kernel_size[2] > 1:
            kt, kh, kw = self.kernel_size
            step = self.stride[2]
            paired = self.weight.new_zeros(2 * self.out_channels, self.in_channels, kt, kh, kw + step)
            paired[: self.out_channels, ..., :kw] = self.weight.detach()
            paired[self.out_channels :, ..., step:] = self.weight.detach()
            self.register_buffer("paired", paired.contiguous(memory_format=torch.channels_last_3d), persistent=False)
            self.register_buffer("paired_bias", self.bias.detach().repeat(2), persistent=False)

    def forward(self, x, residual=None):
        """With `residual`, the oneDNN path writes the result over `residual` and returns it."""
        relu = self.relu or residual is not None  # a block's ReLU follows its addition
        if not (self.onednn and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu") and onednn_post_ops()):
            y = self._conv_forward(x, self.weight, self.bias)
            if residual is not None:
                y = y.add_(residual)
            return F.relu_(y) if relu else y
        # Each form below is the same conv on a view of the same memory: `into` gives the view the
        # oneDNN call takes, `back` turns its output into this conv's (B, C, T, H, W).
        weight, bias, shape = self.weight, self.bias, x.shape
        padding, stride, dilation = self.padding, self.stride, self.dilation
        into = back = lambda t: t  # noqa: E731
        if self.paired is not None and residual is None and x.is_contiguous(memory_format=torch.channels_last_3d) \
                and ((shape[4] + 2 * padding[2] - self.kernel_size[2]) // stride[2]) % 2:  # even width out
            weight, bias, stride = self.paired, self.paired_bias, stride[:2] + (2 * stride[2],)
            # (B, 2C, T, H, W/2) NDHWC is (B, T, H, W/2, 2, C) in memory: the (B, C, T, H, W) output.
            c = self.out_channels
            back = lambda y: (y.permute(0, 2, 3, 4, 1).flatten(3).unflatten(3, (-1, c))  # noqa: E731
                              .permute(0, 4, 1, 2, 3))
        elif self.temporal_only:  # (B, C, T, H * W): a view in NCDHW and NDHWC alike
            weight, padding, stride, dilation = weight[..., 0], padding[:2], stride[:2], dilation[:2]
            into, back = (lambda t: t.flatten(3)), (lambda t: t.unflatten(3, shape[3:]))
        elif self.frame_wise and x.is_contiguous(memory_format=torch.channels_last_3d):  # (B * T, C, H, W), a view
            weight, padding, stride, dilation = weight[:, :, 0], padding[1:], stride[1:], dilation[1:]
            into = lambda t: t.transpose(1, 2).flatten(0, 1)  # noqa: E731
            back = lambda t: t.unflatten(0, (shape[0], -1)).transpose(1, 2)  # noqa: E731
        conv = (weight, bias, padding, stride, dilation, self.groups)
        if residual is None:
            return back(torch.ops.mkldnn._convolution_pointwise(into(x), *conv, "relu" if relu else "none", [], ""))
        return back(torch.ops.mkldnn._convolution_pointwise_.binary(into(residual), into(x), *conv, "add", 1.0,
                                                                     "relu", [], ""))


class FusedBottleneck(nn.Module):
    """A Bottleneck of the inference network: its last FusedConv3d adds the shortcut and applies
    the block's ReLU."""

    def __init__(self, block: Bottleneck):
        super().__init__()
        self.branch2, self.branch1 = block.branch2, block.branch1

    def forward(self, x):
        shortcut = x if self.branch1 is None else self.branch1(x)
        *inner, last = self.branch2
        for layer in inner:
            x = layer(x)
        return last(x, residual=shortcut)


def _swap(model: nn.Module, kind: type, make) -> None:
    """Replace every submodule of type `kind` with make(it)."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, kind):
                setattr(parent, name, make(child))


def fuse_bn(model: SlowFast, onednn: bool = True) -> SlowFast:
    """An inference copy of `model` in eval mode: every conv + BN (+ ReLU) becomes one
    FusedConv3d, and each residual block a FusedBottleneck whose last conv also adds the shortcut.
    It computes the same function as `model` in eval mode, and shares its tensors that folding
    leaves as they are (the classifier's, for one). Its state dict has other keys: save and load
    the original. Without autograd on the CPU, a residual block writes its output over its
    shortcut, which may be the block's input: call its blocks only through the network's own forward.
    With onednn=False its convs are plain F.conv3d calls, the graph every exporter can read."""
    # Tensors are shared, not copied: folding makes new conv weights, and the rest is read only.
    fused = copy.deepcopy(model, {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}).eval()
    _swap(fused, ConvBN, lambda layer: FusedConv3d(layer.conv, layer.bn, layer.relu, onednn))
    _swap(fused, Bottleneck, FusedBottleneck)
    return fused

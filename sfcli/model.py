"""SlowFast networks (Feichtenhofer et al., ICCV 2019): one config dataclass, named presets, one network.

Every variant of the paper -- SlowFast, Slow-only, Fast-only, each lateral connection of Table 5a,
each channel ratio of Table 5b, each Fast input of Table 5c -- is built by `SlowFast(config)`.
The network takes the raw Fast-rate clip (B, 3, alpha*T, H, W) and picks the Slow frames itself.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from sfcli.errors import ConfigError

PATHWAYS = ("slowfast", "slow", "fast")
LATERALS = ("t-conv", "t-sample", "ttoc-sum", "ttoc-concat", "none")
FAST_INPUTS = ("rgb", "gray", "timediff", "half")
# Bottleneck blocks in res2..res5. 14 and 26 are the small depths for CPU work and tests.
STAGE_BLOCKS = {14: (1, 1, 1, 1), 26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# Temporal kernel of conv1 and of the first conv of every bottleneck in res2..res5 (paper Table 1).
SLOW_TEMPORAL_KERNELS = (1, 1, 1, 3, 3)
FAST_TEMPORAL_KERNELS = (5, 3, 3, 3, 3)
# ITU-R BT.601 luma, applied to normalised RGB: mean and std are equal on every channel and the
# weights sum to 1, so this equals normalising the gray image.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def parse_fraction(value: str | int | float | Fraction) -> Fraction:
    """Read a channel ratio such as '1/8', '0.125' or 8 (taken as 1/8, the reference's BETA_INV)."""
    try:
        frac = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"cannot read {value!r} as a fraction such as 1/8") from None
    if frac > 1:
        frac = 1 / frac
    return frac


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a network. Frame counts are for one clip: the Slow pathway sees
    `frames` frames `tau` apart, the Fast pathway alpha*frames frames tau/alpha apart."""

    depth: int = 50
    width: int = 64  # channels of the Slow stem; every other width scales from it
    alpha: int = 8
    beta: Fraction = Fraction(1, 8)
    frames: int = 4
    tau: int = 16
    fusion_kernel: int = 5
    lateral: str = "t-conv"
    pathway: str = "slowfast"
    fast_input: str = "rgb"
    nonlocal_res4: tuple[int, ...] = ()  # indices of res4 blocks followed by a non-local block
    # res4 blocks, from the first, whose first conv is temporal; None: all. The reference's
    # "_50_50" R101 models keep R50's six, which is what the paper's R101 GFLOPs count.
    temporal_res4: int | None = None
    fusion_ratio: int = 2  # a T-conv lateral maps C Fast channels to fusion_ratio * C
    num_classes: int = 400
    dropout: float = 0.5
    # Start every residual block as the identity (the reference's ZERO_INIT_FINAL_BN); it slows
    # the first hundreds of steps, which only short runs of small networks notice.
    zero_init_residual: bool = True

    def __post_init__(self):
        object.__setattr__(self, "beta", parse_fraction(self.beta))
        object.__setattr__(self, "nonlocal_res4", tuple(int(i) for i in self.nonlocal_res4))
        for name in ("alpha", "frames", "tau", "fusion_kernel", "num_classes", "width", "fusion_ratio"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.depth not in STAGE_BLOCKS:
            raise ConfigError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {self.depth}")
        if self.beta <= 0:
            raise ConfigError(f"beta must be a fraction in (0, 1], got {self.beta}")
        for name, allowed in (("pathway", PATHWAYS), ("lateral", LATERALS), ("fast_input", FAST_INPUTS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.tau % self.alpha:
            raise ConfigError(
                f"tau ({self.tau}) must be divisible by alpha ({self.alpha}): the Fast pathway samples "
                f"every tau/alpha frames"
            )
        if self.fast_width < 1:
            raise ConfigError(f"beta {self.beta} leaves the Fast pathway no channels at width {self.width}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.fusion_kernel % 2 == 0:
            raise ConfigError(f"fusion_kernel must be odd so frames stay aligned, got {self.fusion_kernel}")
        if self.temporal_res4 is not None and not 0 <= self.temporal_res4 <= STAGE_BLOCKS[self.depth][2]:
            raise ConfigError(f"temporal_res4 must be between 0 and the {STAGE_BLOCKS[self.depth][2]} blocks of res4")
        if any(not 0 <= i < STAGE_BLOCKS[self.depth][2] for i in self.nonlocal_res4):
            raise ConfigError(f"nonlocal_res4 names a block outside res4 ({STAGE_BLOCKS[self.depth][2]} blocks)")
        if self.pathway == "slowfast" and self.lateral == "ttoc-sum" and self.alpha * self.fast_width != self.width:
            raise ConfigError(
                f"lateral ttoc-sum needs alpha*beta = 1 so that time-to-channel matches the Slow width "
                f"(alpha {self.alpha}, beta {self.beta})"
            )

    @property
    def fast_width(self) -> int:
        return self.fast_channels(self.width)

    def fast_channels(self, slow_channels: int) -> int:
        """The Fast pathway's width where Slow has `slow_channels`: rounded down per layer, as the
        reference computes `dim // beta_inv`, so that beta = 1/6 or 1/12 match its networks."""
        return math.floor(slow_channels * self.beta)

    @property
    def fast_frames(self) -> int:
        """Frames of the clip the network takes (the Fast rate), whatever the pathways."""
        return self.alpha * self.frames

    @property
    def fast_stride(self) -> int:
        return self.tau // self.alpha

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["beta"] = str(self.beta)
        d["nonlocal_res4"] = list(self.nonlocal_res4)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model setting(s): {', '.join(unknown)}")
        return cls(**d)


# ----------------------------------------------------------------------------- building blocks


def conv_bn_relu(c_in: int, c_out: int, kernel, stride=1, relu: bool = True) -> nn.Sequential:
    kernel = tuple(kernel)
    padding = tuple(k // 2 for k in kernel)
    layers = [nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False), nn.BatchNorm3d(c_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Stem(nn.Sequential):
    """conv1 (t x 7 x 7, spatial stride 2) then pool1 (1 x 3 x 3 max, spatial stride 2)."""

    def __init__(self, c_in: int, c_out: int, temporal_kernel: int):
        super().__init__(
            conv_bn_relu(c_in, c_out, (temporal_kernel, 7, 7), stride=(1, 2, 2)),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )


class Bottleneck(nn.Module):
    """[t x 1 x 1, 1 x 3 x 3, 1 x 1 x 1] with the temporal kernel only in the first conv and the
    spatial stride on the 3 x 3 conv; a projection shortcut where the shape changes."""

    def __init__(self, c_in: int, c_inner: int, c_out: int, temporal_kernel: int, spatial_stride: int):
        super().__init__()
        stride = (1, spatial_stride, spatial_stride)
        self.branch2 = nn.Sequential(
            conv_bn_relu(c_in, c_inner, (temporal_kernel, 1, 1)),
            conv_bn_relu(c_inner, c_inner, (1, 3, 3), stride=stride),
            conv_bn_relu(c_inner, c_out, (1, 1, 1), relu=False),
        )
        self.branch1 = None
        if c_in != c_out or spatial_stride != 1:
            self.branch1 = conv_bn_relu(c_in, c_out, (1, 1, 1), stride=stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = x if self.branch1 is None else self.branch1(x)
        last = self.branch2[-1]
        if isinstance(last, FusedConv3d):  # an inference copy (fuse_bn): the conv adds and applies the ReLU
            return last(self.branch2[:-1](x), residual=shortcut)
        # In place: no new tensor the size of the block's output (branch2's last BN does not need
        # its output for the backward pass).
        return self.relu(self.branch2(x).add_(shortcut))


class NonLocal(nn.Module):
    """Dot-product non-local block (Wang et al. 2018), the reference's instantiation, with
    1 x 2 x 2 max-pooled keys and values."""

    def __init__(self, channels: int):
        super().__init__()
        inner = channels // 2
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.pool = nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2))
        self.out = nn.Sequential(nn.Conv3d(inner, channels, 1), nn.BatchNorm3d(channels))

    def forward(self, x):
        b, _, t, h, w = x.shape
        query = self.theta(x).flatten(2).transpose(1, 2)  # (B, THW, C')
        key = self.phi(self.pool(x)).flatten(2)  # (B, C', THW/4)
        value = self.g(self.pool(x)).flatten(2).transpose(1, 2)
        attention = torch.bmm(query, key) / key.shape[-1]
        y = torch.bmm(attention, value).transpose(1, 2).reshape(b, -1, t, h, w)
        return x + self.out(y)


class Lateral(nn.Module):
    """Fast -> Slow connection (paper Table 5a). Returns the features concatenated onto Slow, or
    for ttoc-sum the features added to it."""

    def __init__(self, cfg: ModelConfig, c_fast: int):
        super().__init__()
        self.kind, self.alpha = cfg.lateral, cfg.alpha
        self.out_channels = {"t-conv": cfg.fusion_ratio * c_fast, "t-sample": c_fast,
                             "ttoc-concat": cfg.alpha * c_fast}.get(cfg.lateral, 0)  # added to Slow's input
        self.conv = None
        if self.kind == "t-conv":
            self.conv = conv_bn_relu(c_fast, self.out_channels, (cfg.fusion_kernel, 1, 1), stride=(cfg.alpha, 1, 1))

    def forward(self, slow, fast):
        if self.kind == "t-conv":
            y = self.conv(fast)
        elif self.kind == "t-sample":
            y = fast[:, :, :: self.alpha]
        else:  # time-to-channel: {alpha*T, S^2, C} -> {T, S^2, alpha*C}
            b, c, t, h, w = fast.shape
            y = fast.reshape(b, c, t // self.alpha, self.alpha, h, w).transpose(2, 3).reshape(b, c * self.alpha, -1, h, w)
        if y.shape[-2:] != slow.shape[-2:]:  # a half-resolution Fast pathway
            y = F.interpolate(y, size=slow.shape[-3:], mode="nearest")
        return slow + y if self.kind == "ttoc-sum" else torch.cat([slow, y], dim=1)


def make_stage(c_in: int, c_inner: int, c_out: int, blocks: int, temporal_kernel: int, spatial_stride: int,
               nonlocal_after: tuple[int, ...] = (), temporal_blocks: int | None = None) -> nn.Sequential:
    layers = []
    for i in range(blocks):
        kernel = temporal_kernel if temporal_blocks is None or i < temporal_blocks else 1
        layers.append(Bottleneck(c_in if i == 0 else c_out, c_inner, c_out, kernel, spatial_stride if i == 0 else 1))
        if i in nonlocal_after:
            layers.append(NonLocal(c_out))
    return nn.Sequential(*layers)


class Pathway(nn.Module):
    """One ResNet pathway: stem and res2..res5. `channels` maps a Slow width to this pathway's own;
    `lateral_channels[i]` is what the Fast pathway adds to this pathway's input before res2+i."""

    def __init__(self, cfg: ModelConfig, c_in: int, channels, temporal_kernels, lateral_channels=(0, 0, 0, 0),
                 nonlocal_res4: tuple[int, ...] = ()):
        super().__init__()
        self.widths = [channels(cfg.width)]  # output channels of the stem and of each stage
        # NDHWC (channels_last_3d) where the pathway is wide enough: oneDNN and cuDNN run its 3D
        # convs and BN faster so, the R50 Fast pathway (8 to 256 channels) most of all; with 2 to
        # 4 channels, as in slowfast_tiny's Fast pathway, NCDHW is faster (both measured on the CPU).
        self.memory_format = torch.channels_last_3d if self.widths[0] >= 8 else torch.contiguous_format
        self.stem = Stem(c_in, self.widths[0], temporal_kernels[0])
        self.stages = nn.ModuleList()
        for i, blocks in enumerate(STAGE_BLOCKS[cfg.depth]):
            c_inner, c_out = channels(cfg.width * 2**i), channels(cfg.width * 4 * 2**i)
            self.stages.append(make_stage(self.widths[-1] + lateral_channels[i], c_inner, c_out, blocks,
                                          temporal_kernels[i + 1], 1 if i == 0 else 2,
                                          nonlocal_res4 if i == 2 else (), cfg.temporal_res4 if i == 2 else None))
            self.widths.append(c_out)


class SlowFast(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        head_in = 0
        fast_c_in = 1 if cfg.fast_input in ("gray", "timediff") else 3
        self.slow = self.fast = None
        self.laterals = None
        if cfg.pathway in ("slowfast", "fast"):
            self.fast = Pathway(cfg, fast_c_in, cfg.fast_channels, FAST_TEMPORAL_KERNELS)
            head_in += self.fast.widths[-1]
        if cfg.pathway in ("slowfast", "slow"):
            lateral_channels = (0, 0, 0, 0)
            if cfg.pathway == "slowfast" and cfg.lateral != "none":
                fast_widths = self.fast.widths[:4]  # where the laterals leave: after pool1, res2, res3, res4
                self.laterals = nn.ModuleList(Lateral(cfg, c) for c in fast_widths)
                lateral_channels = tuple(lateral.out_channels for lateral in self.laterals)
            self.slow = Pathway(cfg, 3, int, SLOW_TEMPORAL_KERNELS, lateral_channels, cfg.nonlocal_res4)
            head_in += self.slow.widths[-1]
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(head_in, cfg.num_classes)
        # Slow frames out of the Fast-rate clip: linspace(0, alpha*T - 1, T), rounded down.
        self.register_buffer("slow_index", torch.linspace(0, cfg.fast_frames - 1, cfg.frames).long(), persistent=False)
        self.reset_parameters()
        # Conv weights in their pathway's memory format, like its activations (see `features`), so
        # that no conv reorders its weight on every call. Values and state-dict keys are unchanged.
        for pathway in (self.slow, self.fast):
            if pathway is not None:
                pathway.to(memory_format=pathway.memory_format)
        if self.laterals is not None:
            self.laterals.to(memory_format=self.fast.memory_format)

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of every residual block, and of each non-local block's output,
        # so that each starts as the identity.
        for m in self.modules():
            if isinstance(m, Bottleneck) and self.cfg.zero_init_residual:
                nn.init.zeros_(m.branch2[-1][1].weight)
            elif isinstance(m, NonLocal):
                nn.init.zeros_(m.out[1].weight)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def fast_input(self, clip):
        kind = self.cfg.fast_input
        if kind == "rgb":
            return clip
        if kind == "half":
            return F.avg_pool3d(clip, (1, 2, 2))
        gray = torch.einsum("bcthw,c->bthw", clip, clip.new_tensor(GRAY_WEIGHTS)).unsqueeze(1)
        if kind == "gray":
            return gray
        # timediff: frame t minus frame t-1; the first frame has no predecessor and gets zeros.
        return torch.diff(gray, dim=2, prepend=gray[:, :, :1])

    def features(self, clip):
        """Pooled features (B, C) of a clip (B, 3, alpha*T, H, W)."""
        pooled = []
        # Every layer keeps the memory format of its input: converting a pathway's input to the
        # pathway's format runs the whole pathway in it.
        slow = fast = None
        if self.slow is not None:
            slow = clip.index_select(2, self.slow_index)
            slow = self.slow.stem(slow.contiguous(memory_format=self.slow.memory_format))
        if self.fast is not None:
            fast = self.fast.stem(self.fast_input(clip).contiguous(memory_format=self.fast.memory_format))
        for i in range(4):
            if self.laterals is not None:
                slow = self.laterals[i](slow, fast)
            if slow is not None:
                slow = self.slow.stages[i](slow)
            if fast is not None:
                fast = self.fast.stages[i](fast)
        for x in (slow, fast):
            if x is not None:
                pooled.append(x.mean(dim=(2, 3, 4)))
        return torch.cat(pooled, dim=1)

    def forward(self, clip):
        return self.fc(self.dropout(self.features(clip)))


# oneDNN's fused conv + pointwise ops (what torch.compile's CPU backend calls), where this torch has them.
ONEDNN_POST_OPS = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


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
    same ops one by one."""

    def __init__(self, conv: nn.Conv3d, bn: nn.BatchNorm3d, relu: bool):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, bias=True, device="meta")
        self.weight, self.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                      bn.eps, bn.weight, bn.bias)
        self.relu = relu
        self.temporal_only = self.kernel_size[1:] == (1, 1) and self.stride[1:] == (1, 1)
        self.frame_wise = self.kernel_size[0] == 1 and self.stride[0] == 1
        # A narrow conv (the Fast stem's 8 channels half fill an AVX-512 register) computes two
        # neighbouring output columns as 2C channels: its kernel twice, one stride apart, in a
        # conv of twice the stride. Its NDHWC output is the original's memory, value for value.
        self.register_buffer("paired", None, persistent=False)
        if self.out_channels <= 8 and self.groups == 1 and self.dilation == (1, 1, 1) and self.kernel_size[2] > 1:
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
        if not (ONEDNN_POST_OPS and x.device.type == "cpu" and x.dtype == torch.float32
                and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")):
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


def fuse_bn(model: SlowFast) -> SlowFast:
    """An inference copy of `model` in eval mode: every conv + BN (+ ReLU) becomes one
    FusedConv3d, and each residual block's last conv also adds the shortcut. It computes the same
    function as `model` in eval mode, and shares its tensors that folding leaves as they are (the
    classifier's, for one). Its state dict has other keys: save and load the original.
    Without autograd on the CPU, a residual block writes its output over its shortcut, which may
    be the block's input: call its blocks only through the network's own forward."""
    # Tensors are shared, not copied: folding makes new conv weights, and the rest is read only.
    fused = copy.deepcopy(model, {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}).eval()
    for parent in list(fused.modules()):
        for name, seq in parent.named_children():
            if isinstance(seq, nn.Sequential) and len(seq) > 1 and isinstance(seq[0], nn.Conv3d) \
                    and isinstance(seq[1], nn.BatchNorm3d):
                relu = len(seq) > 2 and isinstance(seq[2], nn.ReLU)
                setattr(parent, name, FusedConv3d(seq[0], seq[1], relu))
    return fused


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gflops(cfg: ModelConfig, crop: int = 256) -> float:
    """Multiply-adds x 1e-9 of one view (alpha*T frames at crop x crop), counted by torch's own
    FlopCounterMode on meta tensors, so that no real compute runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = SlowFast(cfg).eval()
        clip = torch.empty(1, 3, cfg.fast_frames, crop, crop)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(clip)
    return counter.get_total_flops() / 2 / 1e9  # the counter counts a multiply-add as 2 FLOPs


def describe(cfg: ModelConfig, arch: str = "", crop: int = 256) -> dict:
    """Size and cost of a network, as `sfcli info` prints them."""
    with torch.device("meta"):
        params = count_params(SlowFast(cfg))
    return {
        "arch": arch,
        "params": params,
        "gflops": round(count_gflops(cfg, crop), 2),
        "slow_frames": cfg.frames if cfg.pathway != "fast" else 0,
        "fast_frames": cfg.fast_frames if cfg.pathway != "slow" else 0,
        "slow_stride": cfg.tau if cfg.pathway != "fast" else None,
        "fast_stride": cfg.fast_stride if cfg.pathway != "slow" else None,
        "crop": crop,
        "config": cfg.to_dict(),
    }

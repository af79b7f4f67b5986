"""SlowFast networks (Feichtenhofer et al., ICCV 2019): the blocks, the pathways, one network.

Every variant of the paper -- SlowFast, Slow-only, Fast-only, each lateral connection of Table 5a,
each channel ratio of Table 5b, each Fast input of Table 5c -- is built by `SlowFast(config)`,
which takes the raw Fast-rate clip (B, 3, alpha*T, H, W) and picks the Slow frames itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sfcli.memory_formats import pathway_memory_format, stem_conv
from sfcli.model_config import STAGE_BLOCKS, ModelConfig

# Temporal kernel of conv1 and of the first conv of every bottleneck in res2..res5 (paper Table 1).
SLOW_TEMPORAL_KERNELS = (1, 1, 1, 3, 3)
FAST_TEMPORAL_KERNELS = (5, 3, 3, 3, 3)
# ITU-R BT.601 luma, applied to normalised RGB: mean and std are equal on every channel and the
# weights sum to 1, so this equals normalising the gray image.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


class ConvBN(nn.Sequential):
    """A conv ("same" padding, no bias unless asked), its BN and, unless relu=False, a ReLU: the
    unit every pathway is built of. Its parts keep Sequential's keys (0, 1, 2), the state-dict
    names the reference layouts map. `conv_class`: a Conv3d, or a class that computes the same
    conv otherwise (sfcli.memory_formats)."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, relu: bool = True, bias: bool = False,
                 conv_class=nn.Conv3d):
        conv = conv_class(c_in, c_out, tuple(kernel), stride=stride, padding=tuple(k // 2 for k in kernel), bias=bias)
        super().__init__(conv, nn.BatchNorm3d(c_out), *([nn.ReLU(inplace=True)] if relu else []))

    @property
    def conv(self) -> nn.Conv3d:
        return self[0]

    @property
    def bn(self) -> nn.BatchNorm3d:
        return self[1]

    @property
    def relu(self) -> bool:
        return len(self) == 3


class Stem(nn.Sequential):
    """conv1 (t x 7 x 7, spatial stride 2) then pool1 (1 x 3 x 3 max, spatial stride 2)."""

    def __init__(self, c_in: int, c_out: int, temporal_kernel: int):
        super().__init__(
            ConvBN(c_in, c_out, (temporal_kernel, 7, 7), stride=(1, 2, 2),
                   conv_class=stem_conv(c_out, temporal_kernel)),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )


class Bottleneck(nn.Module):
    """[t x 1 x 1, 1 x 3 x 3, 1 x 1 x 1] with the temporal kernel only in the first conv and the
    spatial stride on the 3 x 3 conv; a projection shortcut where the shape changes."""

    def __init__(self, c_in: int, c_inner: int, c_out: int, temporal_kernel: int, spatial_stride: int):
        super().__init__()
        stride = (1, spatial_stride, spatial_stride)
        self.branch2 = nn.Sequential(
            ConvBN(c_in, c_inner, (temporal_kernel, 1, 1)),
            ConvBN(c_inner, c_inner, (1, 3, 3), stride=stride),
            ConvBN(c_inner, c_out, (1, 1, 1), relu=False),
        )
        self.branch1 = None
        if c_in != c_out or spatial_stride != 1:
            self.branch1 = ConvBN(c_in, c_out, (1, 1, 1), stride=stride, relu=False)
        self.relu = nn.ReLU(inplace=True)

    @property
    def last_bn(self) -> nn.BatchNorm3d:
        """The BN before the sum: zero-initialised, it starts the block as the identity."""
        return self.branch2[-1].bn

    def forward(self, x):
        shortcut = x if self.branch1 is None else self.branch1(x)
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
        self.out = ConvBN(inner, channels, (1, 1, 1), relu=False, bias=True)
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
            self.conv = ConvBN(c_fast, self.out_channels, (cfg.fusion_kernel, 1, 1), stride=(cfg.alpha, 1, 1))

    def forward(self, slow, fast):
        if self.kind == "t-conv":
            y = self.conv(fast)
        elif self.kind == "t-sample":
            y = fast[:, :, :: self.alpha]
        else:  # time-to-channel: {alpha*T, S^2, C} -> {T, S^2, alpha*C}
            b, c, t, h, w = fast.shape
            y = fast.reshape(b, c, t // self.alpha, self.alpha, h, w).transpose(2, 3)
            y = y.reshape(b, c * self.alpha, -1, h, w)
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
        self.memory_format = pathway_memory_format(self.widths[0])
        self.stem = Stem(c_in, self.widths[0], temporal_kernels[0])
        self.stages = nn.ModuleList()
        for i, blocks in enumerate(STAGE_BLOCKS[cfg.depth]):
            c_inner, c_out = channels(cfg.width * 2**i), channels(cfg.width * 4 * 2**i)
            self.stages.append(make_stage(self.widths[-1] + lateral_channels[i], c_inner, c_out, blocks,
                                          temporal_kernels[i + 1], 1 if i == 0 else 2,
                                          nonlocal_res4 if i == 2 else (), cfg.temporal_res4 if i == 2 else None))
            self.widths.append(c_out)


class SlowFast(nn.Module):
    """The network of any ModelConfig: SlowFast, Slow-only or Fast-only. Input: a normalised clip
    (N, 3, frames, H, W) of alpha*T frames; output: logits (N, num_classes)."""

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
        # Spatial window (res5 cells) of the test head, or None: global pooling, one classifier
        # call (training, and views of the training size). Set on test copies (sfcli.predict).
        self.head_window: int | None = None
        self.head_multi_label = False  # the windowed head averages sigmoids (multi-label) or softmaxes
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
                nn.init.zeros_(m.last_bn.weight)
            elif isinstance(m, NonLocal):
                nn.init.zeros_(m.out.bn.weight)
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

    def res5(self, clip) -> list[torch.Tensor]:
        """The res5 maps (B, C, T, H, W) of a clip (B, 3, alpha*T, H, W): Slow's, then Fast's."""
        # Every layer keeps the memory format of its input: converting a pathway's input to the
        # pathway's format runs the whole pathway in it.
        slow = fast = None
        if self.slow is not None:
            index = self.slow_index
            if clip.shape[2] != self.cfg.fast_frames:  # a multigrid clip: alpha*T' frames, T' of them Slow's
                index = torch.linspace(0, clip.shape[2] - 1, clip.shape[2] // self.cfg.alpha, device=clip.device).long()
            slow = clip.index_select(2, index)
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
        return [x for x in (slow, fast) if x is not None]

    def features(self, clip):
        """Globally pooled features (B, C) of a clip (B, 3, alpha*T, H, W)."""
        return torch.cat([x.mean(dim=(2, 3, 4)) for x in self.res5(clip)], dim=1)

    def forward(self, clip):
        """Logits (B, classes); with `head_window` set, log-probabilities (see `windowed_head`)."""
        if self.head_window is not None:
            return self.windowed_head(self.res5(clip), self.head_window)
        return self.fc(self.dropout(self.features(clip)))

    def windowed_head(self, maps: list[torch.Tensor], window: int) -> torch.Tensor:
        """The reference's fully convolutional test head: each res5 map average-pooled over its
        whole length and `window` x `window` cells at stride 1 (window = training crop / 32: a
        256 view of a network trained on 224 crops gives 2 x 2 positions of its 8 x 8 map), the
        classifier applied at every position, the positions' softmaxes averaged. Returned as the
        log of that average, so that a softmax of the output gives it back (for a multi-label
        network, `head_multi_label`: sigmoids averaged, returned as their logit)."""
        # Python ints: a traced export (sfcli.export) needs the kernel as constants, not shape ops.
        pooled = [F.avg_pool3d(x, (int(x.shape[2]), min(window, int(x.shape[3])), min(window, int(x.shape[4]))),
                               stride=1) for x in maps]
        positions = torch.cat(pooled, dim=1).flatten(2).transpose(1, 2)  # (B, positions, C)
        if self.head_multi_label:  # per-position sigmoids averaged; a sigmoid of the output gives them back
            return torch.logit(self.fc(positions).sigmoid().mean(dim=1), eps=1e-7)
        return self.fc(positions).softmax(dim=-1).mean(dim=1).log()

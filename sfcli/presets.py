"""Named presets, timm style: each is a network and the data pipeline it trains and tests with (as
timm's pretrained_cfg), so that `create_model(name)` and `clip_config(cfg, name)` agree."""

from __future__ import annotations

from dataclasses import dataclass

from sfcli.data import ClipConfig
from sfcli.errors import ConfigError
from sfcli.model import SlowFast
from sfcli.model_config import ModelConfig
from sfcli.transforms import KINETICS_MEAN, KINETICS_STD


@dataclass(frozen=True)
class Preset:
    """A network and its data pipeline: the training crop, the test crop at that training crop,
    and the normalisation. The clip's frames and their stride are the network's own (alpha*T
    frames tau/alpha apart), so that a network built with other T or tau gets its own."""

    model: ModelConfig
    crop: int = 224
    test_crop: int = 256  # the paper tests fully convolutionally on views larger than its crops
    mean: float = KINETICS_MEAN
    std: float = KINETICS_STD

    def clip_config(self, model: ModelConfig | None = None, crop: int | None = None,
                    views: tuple[int, int] = (10, 3)) -> ClipConfig:
        """How clips are cut for `model` (the preset's network unless given): at `crop` (the
        preset's unless given) with the test crop scaled alike; the paper's short sides for a
        224 crop (jittered in [256, 320] in training, 256 at test) scaled to it; `views` =
        (clips, crops) at test time."""
        model = model or self.model
        crop = crop or self.crop
        return ClipConfig(frames=model.fast_frames, stride=model.fast_stride, crop=crop,
                          min_short=round(crop * 256 / 224), max_short=round(crop * 320 / 224),
                          test_short=round(crop * 256 / 224), test_crop=round(crop * self.test_crop / self.crop),
                          num_clips=views[0], num_crops=views[1], mean=self.mean, std=self.std)


PRESETS: dict[str, Preset] = {
    "slowfast_4x16_r50": Preset(ModelConfig()),
    "slowfast_8x8_r50": Preset(ModelConfig(alpha=4, frames=8, tau=8, fusion_kernel=7)),
    "slowfast_8x8_r101": Preset(ModelConfig(depth=101, alpha=4, frames=8, tau=8)),
    # The paper's 16x8 R101 models are the reference's "_50_50" ones; +NL adds non-local blocks
    # after res4 blocks 6, 13 and 20.
    "slowfast_16x8_r101": Preset(ModelConfig(depth=101, alpha=4, frames=16, tau=8, temporal_res4=6)),
    "slowfast_16x8_r101_nl": Preset(ModelConfig(depth=101, alpha=4, frames=16, tau=8, temporal_res4=6,
                                                nonlocal_res4=(6, 13, 20))),
    # Slow-only networks take T frames tau apart: alpha 1 makes the clip exactly those frames.
    "slow_4x16_r50": Preset(ModelConfig(pathway="slow", alpha=1)),
    "slow_8x8_r50": Preset(ModelConfig(pathway="slow", alpha=1, frames=8, tau=8)),
    "fast_4x16_r50": Preset(ModelConfig(pathway="fast")),
    # The paper's 4x16 (alpha 8, beta 1/8) at depth 14 and a quarter of the width: trains in
    # minutes on 2 CPU cores at 64 px. It tests at its training size: on larger views it loses
    # most of its motion classes.
    "slowfast_tiny": Preset(ModelConfig(depth=14, width=16, zero_init_residual=False), crop=48, test_crop=48),
}


def build_config(arch: str, **overrides) -> ModelConfig:
    """A preset's network by name, with any field replaced; None values leave the preset's value."""
    if arch not in PRESETS:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return PRESETS[arch].model.replace(**overrides)


def create_model(arch: str, **overrides) -> SlowFast:
    """Build a network from a preset name and field overrides, timm style."""
    return SlowFast(build_config(arch, **overrides))


def clip_config(model_cfg: ModelConfig, arch: str, crop: int | None = None,
                views: tuple[int, int] = (10, 3)) -> ClipConfig:
    """The data pipeline of preset `arch` for `model_cfg` (see Preset.clip_config); a network of
    no preset ("custom") gets the paper's."""
    return PRESETS.get(arch, Preset(model_cfg)).clip_config(model_cfg, crop, views)

"""Named presets, timm style: `create_model(name)` builds a network, `clip_config` gives the data
pipeline the preset was trained and tested with."""

from __future__ import annotations

from fractions import Fraction

from sfcli.data import ClipConfig
from sfcli.errors import ConfigError
from sfcli.model import ModelConfig, SlowFast

PRESETS: dict[str, ModelConfig] = {
    "slowfast_4x16_r50": ModelConfig(),
    "slowfast_8x8_r50": ModelConfig(alpha=4, frames=8, tau=8, fusion_kernel=7),
    "slowfast_8x8_r101": ModelConfig(depth=101, alpha=4, frames=8, tau=8),
    # The paper's 16x8 R101 models are the reference's "_50_50" ones; +NL adds non-local blocks
    # after res4 blocks 6, 13 and 20.
    "slowfast_16x8_r101": ModelConfig(depth=101, alpha=4, frames=16, tau=8, temporal_res4=6),
    "slowfast_16x8_r101_nl": ModelConfig(depth=101, alpha=4, frames=16, tau=8, temporal_res4=6,
                                         nonlocal_res4=(6, 13, 20)),
    # Slow-only networks take T frames tau apart: alpha 1 makes the clip exactly those frames.
    "slow_4x16_r50": ModelConfig(pathway="slow", alpha=1),
    "slow_8x8_r50": ModelConfig(pathway="slow", alpha=1, frames=8, tau=8),
    "fast_4x16_r50": ModelConfig(pathway="fast"),
    # The paper's 4x16 (alpha 8, beta 1/8) at depth 14 and a quarter of the width: trains in
    # minutes on 2 CPU cores at 64 px.
    "slowfast_tiny": ModelConfig(depth=14, width=16, zero_init_residual=False),
}


# Training crop of each preset and its test crop as a multiple of it: the paper's 224, tested
# fully convolutionally on 256 views. The small preset tests at its training size: on larger views
# it loses most of its motion classes.
VIEW_CROPS = {"slowfast_tiny": (64, Fraction(1))}


def view_crops(arch: str, crop: int | None = None) -> tuple[int, int]:
    """(training crop, test crop) of a preset, or of a training crop the user chose."""
    default, test_ratio = VIEW_CROPS.get(arch, (224, Fraction(256, 224)))
    crop = crop or default
    return crop, round(crop * test_ratio)


def build_config(arch: str, **overrides) -> ModelConfig:
    """A preset by name, with any field replaced; None values leave the preset's value."""
    if arch not in PRESETS:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return ModelConfig.from_dict({**PRESETS[arch].to_dict(), **overrides})


def create_model(arch: str, **overrides) -> SlowFast:
    """Build a network from a preset name and field overrides, timm style."""
    return SlowFast(build_config(arch, **overrides))


def clip_config(model_cfg: ModelConfig, arch: str, crop: int | None = None,
                views: tuple[int, int] = (10, 3)) -> ClipConfig:
    """The data pipeline of a preset: its training and test crops (or those of `crop`), the paper's
    short sides scaled to them, `views` = (clips, crops) at test time."""
    crop, test_crop = view_crops(arch, crop)
    num_clips, num_crops = views
    return ClipConfig.for_model(model_cfg, crop, test_crop=test_crop, num_clips=num_clips, num_crops=num_crops)

"""Presets carry their data pipeline: crops, short sides, frames and normalisation."""

import dataclasses

import pytest

from sfcli.data import ClipConfig
from sfcli.errors import ConfigError
from sfcli.presets import PRESETS, Preset, build_config, clip_config, create_model


def test_the_paper_presets_train_on_224_and_test_on_256():
    clip = clip_config(build_config("slowfast_4x16_r50"), "slowfast_4x16_r50")
    assert (clip.crop, clip.min_short, clip.max_short, clip.test_short, clip.test_crop) == (224, 256, 320, 256, 256)
    assert (clip.frames, clip.stride, clip.num_clips, clip.num_crops) == (32, 2, 10, 3)
    assert (clip.mean, clip.std) == (0.45, 0.225)


def test_the_small_preset_tests_at_its_training_size_and_scales_with_the_crop():
    cfg = build_config("slowfast_tiny")
    clip = clip_config(cfg, "slowfast_tiny", views=(1, 1))
    assert (clip.frames, clip.stride, clip.max_stride) == (32, 2, None)
    assert (clip.crop, clip.min_short, clip.max_short) == (48, 55, 69)
    assert (clip.test_short, clip.test_crop, clip.num_clips, clip.num_crops) == (55, 48, 1, 1)
    scaled = clip_config(cfg, "slowfast_tiny", crop=112)
    assert (scaled.crop, scaled.min_short, scaled.max_short, scaled.test_crop) == (112, 128, 160, 112)


def test_frames_follow_the_network_not_the_preset():
    cfg = build_config("slowfast_4x16_r50", frames=8, tau=8)
    assert (clip_config(cfg, "slowfast_4x16_r50").frames, clip_config(cfg, "slowfast_4x16_r50").stride) == (64, 1)


def test_a_network_of_no_preset_gets_the_papers_pipeline():
    cfg = build_config("slowfast_tiny", num_classes=7)
    assert clip_config(cfg, "custom") == Preset(cfg).clip_config() == PRESETS["slowfast_4x16_r50"].clip_config(cfg)


def test_a_preset_normalisation_reaches_the_clip():
    preset = dataclasses.replace(PRESETS["slowfast_tiny"], mean=0.5, std=0.25)
    clip = preset.clip_config()
    assert (clip.mean, clip.std) == (0.5, 0.25)
    assert ClipConfig(**dataclasses.asdict(clip)) == clip  # as a checkpoint stores it


def test_create_model_builds_the_presets_network():
    assert create_model("slowfast_tiny", num_classes=3).cfg == dataclasses.replace(PRESETS["slowfast_tiny"].model,
                                                                                  num_classes=3)
    with pytest.raises(ConfigError, match="unknown architecture"):
        build_config("no_such_net")

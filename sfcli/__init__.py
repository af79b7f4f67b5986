"""sfcli: SlowFast video networks from Python and the command line.

What a script needs, importable from the top level (each name's own docstring says more):

    model = sfcli.create_model("slowfast_8x8_r50")          # a network from a preset name
    model, info = sfcli.load_model("SLOWFAST_8x8_R50.pyth")  # any checkpoint layout users have
    predictor = sfcli.load_predictor("runs/tiny")             # a checkpoint ready to score videos
    result = sfcli.infer_video(predictor, "clip.mp4")        # top-k labels, per window with window=S
    result = sfcli.train("runs/tiny", train_videos, model_cfg, clip, sfcli.TrainConfig())
    result = sfcli.evaluate_checkpoint("runs/tiny", "data/val.csv")

Names are imported on first use, so `import sfcli` (and every `sfcli` command) stays quick.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    # networks and their presets
    "ModelConfig": "sfcli.model_config",
    "SlowFast": "sfcli.model",
    "PRESETS": "sfcli.presets",
    "build_config": "sfcli.presets",
    "create_model": "sfcli.presets",
    "clip_config": "sfcli.presets",
    "describe": "sfcli.cost",
    # checkpoints of every layout
    "load_model": "sfcli.checkpoint",
    "read_checkpoint": "sfcli.checkpoint",
    "save_model": "sfcli.checkpoint",
    "convert": "sfcli.checkpoint",
    # fine-tuning and named official weights
    "FineTuning": "sfcli.finetune",
    "prepare_init": "sfcli.finetune",
    "WEIGHTS": "sfcli.hub",
    # data
    "ClipConfig": "sfcli.data",
    "VideoDataset": "sfcli.data",
    "read_video_list": "sfcli.videolist",
    "write_dataset": "sfcli.synth",
    # scoring, training, testing
    "load_predictor": "sfcli.predict",
    "infer_video": "sfcli.infer",
    "TrainConfig": "sfcli.recipe",
    "train": "sfcli.training",
    "update_bn_stats": "sfcli.precise_bn",
    "read_run": "sfcli.runs",
    "evaluate": "sfcli.evaluation",
    "evaluate_checkpoint": "sfcli.evaluation",
    "read_scores": "sfcli.evaluation",
    "combine_scores": "sfcli.evaluation",
    "confusion_matrix": "sfcli.metrics",
    "mean_average_precision": "sfcli.metrics",
    "plot_runs": "sfcli.plots",
    # after training: features, exported networks, labelled videos
    "extract": "sfcli.extract",
    "export_model": "sfcli.export",
    "load_onnx_predictor": "sfcli.export",
    "render_video": "sfcli.render",
    "SfcliError": "sfcli.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sfcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return __all__

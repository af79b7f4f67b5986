"""A run whose clips leave batch norm one value per channel stops before it writes anything."""

from conftest import one_line_error, sfcli

from sfcli.bn_sizes import smallest_batch_norm
from sfcli.presets import create_model


def test_the_smallest_batch_norm_is_res5_of_the_slow_pathway():
    """slowfast_tiny (alpha 8, spatial stride 32): a 32-frame clip at 48² leaves res5 of the Slow
    pathway 4 frames of 2x2 per clip; an 8-frame clip at 24², 1 frame of 1x1."""
    model = create_model("slowfast_tiny", num_classes=3).train()
    full = smallest_batch_norm(model, [(32, 48)], clips=1)
    assert full.values == 16 and full.layer.startswith("slow.stages.3.") and (full.frames, full.crop) == (32, 48)
    assert smallest_batch_norm(model, [(32, 48)], clips=2).values == 32
    coarse = smallest_batch_norm(model, [(32, 48), (8, 24)], clips=1)
    assert (coarse.values, coarse.frames, coarse.crop) == (1, 8, 24)
    assert smallest_batch_norm(model.eval(), [(8, 24)], clips=1) is None  # no BN in training mode


def test_a_clip_too_small_for_batch_norm_is_one_line_and_writes_nothing(synth, tmp_path):
    args = ["train", "--data", str(synth / "train.csv"), "--arch", "slowfast_tiny", "--batch-size", "1"]
    line = one_line_error(sfcli(*args, "--crop", "32", "--frames", "1", "--out", str(tmp_path / "small")))
    assert "batch norm" in line and "1 clip(s) per process of 8 frames at 32²" in line and "--batch-size" in line
    line = one_line_error(sfcli(*args, "--multigrid", "--out", str(tmp_path / "multigrid")))
    assert "of 8 frames at 24²" in line  # the long cycle's coarsest shape, in its short cycle's smallest crop
    assert not (tmp_path / "small").exists() and not (tmp_path / "multigrid").exists()

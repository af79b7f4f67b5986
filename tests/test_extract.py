"""`sfcli extract` on real videos: the features are the network's pooled features, and a second run
resumes instead of starting over."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import sfcli, write_video
from test_infer import tiny_checkpoint

from sfcli import data
from sfcli.checkpoint import load_model
from sfcli.extract import INDEX, extract
from sfcli.infer import window_bounds
from sfcli.predict import load_predictor
from sfcli.transforms import normalize


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    checkpoint = tiny_checkpoint(root / "four.pt", ["a", "b", "c", "d"])
    videos = [write_video(root / "videos" / name / "v.mp4", num_frames=frames, size=(48, 64))
              for name, frames in (("x", 40), ("y", 70))]
    return root, checkpoint, videos


def test_features_are_the_networks_pooled_features_and_a_rerun_resumes(setup):
    root, checkpoint, videos = setup
    out = root / "features"
    result = sfcli("extract", str(root / "videos"), "--out", str(out), "--checkpoint", str(checkpoint),
                   "--dtype", "float32", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["extracted"] == 2
    index = [json.loads(line) for line in (out / INDEX).read_text().splitlines()]
    assert [entry["features"] for entry in index] == ["x/v.npy", "y/v.npy"]
    model, _ = load_model(checkpoint)
    predictor = load_predictor(checkpoint, device="cpu")
    span = predictor.clip.frames * predictor.clip.stride / 30
    entry = index[1]
    features = np.load(out / entry["features"])
    slow, fast = model.slow.widths[-1], model.fast.widths[-1]
    assert features.shape == (len(entry["windows"]), entry["dims"]) and entry["dims"] == slow + fast == 576
    assert entry["windows"][0] == [0, pytest.approx(span, abs=1e-3)] and entry["fps"] == pytest.approx(30)
    assert len(entry["weights_sha256"]) == 64 and entry["network"] == "slowfast_tiny"
    # The same clip straight through the unfused network's features.
    clip = dataclasses.replace(predictor.clip, num_clips=1, num_crops=1)
    views = data.test_views(videos[1], clip, seconds=window_bounds(70 / 30, span, span)[1])[0]
    with torch.no_grad():
        expected = model.features(normalize(views, clip.mean, clip.std))[0]
    assert np.abs(features[1] - expected.numpy()).max() < 1e-4

    (out / "x" / "v.npy").unlink()
    (out / "x" / "v.json").unlink()
    before = (out / "y" / "v.npy").stat().st_mtime_ns
    # Another input beside them (a missing one) leaves the videos' names, so the done one is found.
    summary = extract(predictor, [root / "videos", root / "missing.mp4"], out, pathway="fast", dtype="float32")
    assert (summary.extracted, summary.skipped) == (1, 1)
    assert summary.failed == ((str(root / "missing.mp4"), "no such file"),)
    assert (out / "y" / "v.npy").stat().st_mtime_ns == before  # a done video is not touched
    assert np.load(out / "x" / "v.npy").shape[1] == fast
    assert len((out / INDEX).read_text().splitlines()) == 2
    assert not list(out.rglob("*.tmp"))


def test_per_video_is_one_row_the_mean_of_the_windows(setup, tmp_path):
    root, checkpoint, videos = setup
    predictor = load_predictor(checkpoint, device="cpu")
    extract(predictor, [videos[1]], tmp_path / "w", dtype="float32")
    extract(predictor, [videos[1]], tmp_path / "v", per_video=True, dtype="float32")
    rows, mean = np.load(tmp_path / "w" / "v.npy"), np.load(tmp_path / "v" / "v.npy")
    assert mean.shape == (1, rows.shape[1]) and np.allclose(mean[0], rows.mean(0), atol=1e-5)

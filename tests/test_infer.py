"""`sfcli infer` and `sfcli convert` on real video files, with checkpoints of every layout."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from conftest import one_line_error, sfcli, write_video
from sfcli import checkpoint as ck
from sfcli.data import ClipConfig
from sfcli.model import create_model
from sfcli.synth import write_dataset

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def four_class(tmp_path_factory):
    """A random-weights 4-class slowfast_tiny checkpoint tested on 32px views."""
    torch.manual_seed(0)
    model = create_model("slowfast_tiny", num_classes=4)
    clip = ClipConfig.for_model(model.cfg, crop=32, test_crop=32)
    path = tmp_path_factory.mktemp("ck") / "four.pt"
    ck.save_checkpoint(path, ck.make_payload(model, CLASSES, "slowfast_tiny", clip=dataclasses.asdict(clip)))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    good = [write_video(root / "folder" / f"good{i}.mp4", num_frames=40, size=(48, 64)) for i in range(2)]
    (root / "folder" / "bad.mp4").write_text("this is text, not a video\n")
    (root / "empty.mp4").write_bytes(b"")
    long = write_video(root / "long.mp4", num_frames=150, size=(48, 64))  # 5 s at 30 fps
    return root, good, long


def infer_json(*args):
    result = sfcli("infer", *args, "--json")
    return result, (json.loads(result.stdout) if result.stdout.strip() else [])


def test_infer_prints_top_k_never_more_than_the_classes(four_class, videos):
    _, good, _ = videos
    result, out = infer_json(str(good[0]), "--checkpoint", str(four_class), "--top-k", "10", "--views", "2x3")
    assert result.returncode == 0, result.stderr
    (video,) = out
    assert set(video) == {"video", "seconds", "fps", "predictions", "windows"}
    assert [p["label"] for p in video["predictions"]] != [] and len(video["predictions"]) == 4
    assert sorted(p["label"] for p in video["predictions"]) == CLASSES
    assert sum(p["score"] for p in video["predictions"]) == pytest.approx(1, abs=1e-3)
    assert video["fps"] == pytest.approx(30) and video["seconds"] == pytest.approx(40 / 30, abs=0.01)
    table = sfcli("infer", str(good[0]), "--checkpoint", str(four_class), "--top-k", "10", "--views", "1x1")
    assert table.returncode == 0 and sum(f"│ {c} " in table.stdout for c in CLASSES) == 4


def test_a_folder_with_one_bad_video_gives_two_results_one_error_line_and_exit_1(four_class, videos):
    root, good, _ = videos
    result, out = infer_json(str(root / "folder"), "--checkpoint", str(four_class), "--views", "1x1")
    assert result.returncode == 1
    assert sorted(Path(r["video"]).name for r in out) == ["good0.mp4", "good1.mp4"]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "bad.mp4" in errors[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("name, reason", [("empty.mp4", "empty file"), ("missing.mp4", "no such file")])
def test_empty_and_missing_videos_are_named_with_the_reason(four_class, videos, name, reason):
    root, good, _ = videos
    result, out = infer_json(str(root / name), str(good[0]), "--checkpoint", str(four_class), "--views", "1x1")
    assert result.returncode == 1 and len(out) == 1
    assert name in result.stderr and reason in result.stderr and "Traceback" not in result.stderr


def test_windows_cover_the_video(four_class, videos):
    _, _, long = videos
    result, out = infer_json(str(long), "--checkpoint", str(four_class), "--views", "1x1", "--window", "2",
                             "--stride", "1.5")
    assert result.returncode == 0, result.stderr
    windows = out[0]["windows"]
    assert [(w["start"], w["end"]) for w in windows] == [(0, 2), (1.5, 3.5), (3, 5)]
    assert all(len(w["predictions"]) == 4 for w in windows)


def test_labels_file_renames_the_classes_and_must_match_their_number(four_class, videos, tmp_path):
    _, good, _ = videos
    labels = tmp_path / "labels.txt"
    labels.write_text("w\nx\ny\nz\n")
    result, out = infer_json(str(good[0]), "--checkpoint", str(four_class), "--labels", str(labels), "--views", "1x1")
    assert sorted(p["label"] for p in out[0]["predictions"]) == ["w", "x", "y", "z"]
    labels.write_text("w\nx\n")
    line = one_line_error(sfcli("infer", str(good[0]), "--checkpoint", str(four_class), "--labels", str(labels)))
    assert "2 classes" in line and "4 outputs" in line


def test_a_checkpoint_that_carries_code_is_refused(videos, tmp_path):
    _, good, _ = videos
    evil = tmp_path / "evil.pt"
    torch.save({"model_state": {}, "hook": print}, evil)  # print pickles as a global: code, not weights
    line = one_line_error(sfcli("infer", str(good[0]), "--weights", str(evil)))
    assert "evil.pt" in line and "carries code" in line


def test_convert_then_infer_with_foreign_weights_and_arch(videos, tmp_path):
    _, good, _ = videos
    torch.manual_seed(1)
    model = create_model("slowfast_tiny", num_classes=4)
    foreign = tmp_path / "pyslowfast.pyth"
    torch.save({"model_state": ck.sfcli_to_pyslowfast(model.state_dict()), "epoch": 3}, foreign)
    converted = tmp_path / "converted.pt"
    result = sfcli("convert", str(foreign), str(converted), "--arch", "slowfast_tiny", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "pyslowfast"
    loaded = ck.load_checkpoint(converted)
    assert all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())
    a = infer_json(str(good[0]), "--weights", str(foreign), "--arch", "slowfast_tiny", "--views", "1x1")[1]
    b = infer_json(str(good[0]), "--checkpoint", str(converted), "--views", "1x1")[1]
    assert a[0]["predictions"] == b[0]["predictions"]


def test_exactly_one_source_of_weights(videos):
    _, good, _ = videos
    assert "exactly one" in one_line_error(sfcli("infer", str(good[0])))


def test_infer_names_the_right_class_of_held_out_videos_after_training(tmp_path):
    """Train on synth data (a shape class and a motion class), then infer on its held-out videos:
    right for most, and the same accuracy as `sfcli eval` with the same views."""
    data = tmp_path / "data"
    write_dataset(data, classes=["ring", "falling"], train_per_class=40, val_per_class=5, size=(80, 80), frames=32)
    run = tmp_path / "run"
    trained = sfcli("train", "--data", str(data), "--arch", "slowfast_tiny", "--frames", "2", "--epochs", "12",
                    "--batch-size", "8", "--views", "2x3", "--workers", "1", "--out", str(run), "--json",
                    env={"OMP_NUM_THREADS": "2"})
    assert trained.returncode == 0, trained.stderr
    result, out = infer_json(str(data / "val"), "--checkpoint", str(run), "--views", "2x3")
    assert result.returncode == 0, result.stderr
    right = [Path(r["video"]).parent.name == r["predictions"][0]["label"] for r in out]
    assert len(right) == 10 and sum(right) >= 8  # measured: 9 of 10
    assert 100 * sum(right) / len(right) == json.loads(trained.stdout)["test"]["top1"]

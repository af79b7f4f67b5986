"""Multi-label data (Charades-style): the `path,labels` CSV, `sfcli synth --multi-label` (two
sprites per video), sigmoid + binary cross-entropy in training, mAP as the headline."""

import json

import pytest
import torch
from conftest import one_line_error, sfcli

from sfcli.errors import DataError
from sfcli.files import load_checkpoint
from sfcli.metrics import multi_label_accuracy
from sfcli.synth import write_dataset
from sfcli.videolist import read_video_list

TINY = ["--arch", "slowfast_tiny", "--width", "8", "--crop", "32", "--batch-size", "4", "--workers", "0",
        "--views", "1x1"]


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """4 classes, 2 train + 1 val videos each, each video showing two of them."""
    root = tmp_path_factory.mktemp("multi")
    write_dataset(root, classes=4, train_per_class=2, val_per_class=1, size=(48, 48), frames=16, multi_label=True)
    return root


def test_synth_writes_two_labels_per_video_in_a_multi_label_csv(multi):
    lines = (multi / "train.csv").read_text().splitlines()
    assert lines[0] == "path,labels" and len(lines) == 9
    for line in lines[1:]:
        path, labels = line.split(",")
        assert (multi / path).is_file() and len(set(labels.split(";"))) == 2
    videos = read_video_list(multi / "train.csv")
    assert videos.multi_label and videos.classes == sorted(videos.classes)
    assert all(sum(label) == 2 and len(label) == 4 for label in videos.labels)


def test_the_list_format(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mp4").write_bytes(b"")
    (tmp_path / "list.csv").write_text("path,labels\na.mp4,run; jump\nb.mp4,sit\n")
    videos = read_video_list(tmp_path / "list.csv")
    assert videos.classes == ["jump", "run", "sit"] and videos.labels == [(1, 1, 0), (0, 0, 1)]
    assert videos.paths == [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    (tmp_path / "list.csv").write_text("path,labels\na.mp4,\n")
    with pytest.raises(DataError, match="line 2: expected a path and its labels separated by ';'"):
        read_video_list(tmp_path / "list.csv")


def test_multi_label_accuracy_counts_a_top_class_among_the_labels():
    targets = torch.tensor([[1, 1, 0], [0, 0, 1]])
    acc = multi_label_accuracy(torch.tensor([[0.8, 0.3, 0.2], [0.9, 0.1, 0.7]]), targets, ["a", "b", "c"])
    assert acc.top1 == 50.0 and acc.top5 == 100.0 and acc.mean_class_accuracy is None
    assert [c.ap for c in acc.per_class] == [50.0, 100.0, 100.0] and [c.videos for c in acc.per_class] == [1, 1, 1]
    assert acc.map == pytest.approx(83.33)


def test_a_tiny_multi_label_run_reports_map_and_keeps_the_best_map(multi, tmp_path):
    run = tmp_path / "run"
    result = sfcli("train", "--data", str(multi), *TINY, "--epochs", "2", "--out", str(run), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    maps = [h["val_map"] for h in summary["history"]]
    assert all(0 < m <= 100 for m in maps) and all(h["loss"] < 1 for h in summary["history"])  # BCE of 4 classes
    assert load_checkpoint(run / "best.pt")["epoch"] == maps.index(max(maps)) + 1
    assert summary["test"]["map"] == pytest.approx(maps[-1], abs=0.01)  # the same 1x1 views
    evaluated = sfcli("eval", "--checkpoint", str(run), "--data", str(multi / "val.csv"), "--views", "1x1",
                      "--workers", "0", "--json", "--out", str(tmp_path / "eval"), "--save-scores",
                      str(tmp_path / "s.json"))
    assert evaluated.returncode == 0, evaluated.stderr
    out = json.loads(evaluated.stdout)
    assert out["map"] == summary["test"]["map"] and out["mean_class_accuracy"] is None
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["eval.json"]  # no confusion matrix
    saved = json.loads((tmp_path / "s.json").read_text())
    assert all(len(v["label"]) == 2 for v in saved["videos"])
    combined = json.loads(sfcli("eval", "--scores", str(tmp_path / "s.json"), str(tmp_path / "s.json"),
                                "--json").stdout)
    assert combined["map"] == out["map"]


def test_single_and_multi_label_data_do_not_mix(multi, synth, tmp_path):
    line = one_line_error(sfcli("train", "--data", str(synth / "train.csv"), "--val-data", str(multi / "val.csv"),
                                *TINY, "--epochs", "1", "--out", str(tmp_path / "run")))
    assert "classes differ" in line or "multi-label" in line

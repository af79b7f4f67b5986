"""`sfcli eval --out DIR --save-scores FILE` and `sfcli eval --scores A B` on real files made by
sfcli synth: the confusion matrix agrees with the counts and top-1, combined scores are averages."""

import csv
import dataclasses
import json

import pytest
import torch
from conftest import one_line_error, sfcli

from sfcli.checkpoint import make_payload
from sfcli.files import save_checkpoint
from sfcli.presets import clip_config, create_model
from sfcli.synth import select_classes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained slowfast_tiny (width 8, 32 px crops) for the synth fixture's 4 classes: its
    guesses are wrong often enough to fill the confusion matrix."""
    torch.manual_seed(3)
    model = create_model("slowfast_tiny", num_classes=4, width=8)
    clip = clip_config(model.cfg, "slowfast_tiny", crop=32)
    path = tmp_path_factory.mktemp("eval") / "tiny.pt"
    save_checkpoint(path, make_payload(model, select_classes(4), "slowfast_tiny", clip=dataclasses.asdict(clip)))
    return path


def run_eval(checkpoint, synth, views, *extra):
    result = sfcli("eval", "--checkpoint", str(checkpoint), "--data", str(synth / "val.csv"), "--views", views,
                   "--workers", "0", "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def two_runs(checkpoint, synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-out")
    a = run_eval(checkpoint, synth, "1x1", "--out", str(out / "a"), "--save-scores", str(out / "a.json"))
    b = run_eval(checkpoint, synth, "2x3", "--save-scores", str(out / "b.json"))
    return out, a, b


def test_confusion_rows_sum_to_class_counts_and_diagonal_to_top1(two_runs, synth):
    out, a, _ = two_runs
    with open(synth / "val.csv") as f:
        counts = {}
        for row in csv.DictReader(f):
            counts[row["label"]] = counts.get(row["label"], 0) + 1
    with open(out / "a" / "confusion.csv") as f:
        rows = list(csv.reader(f))
    classes = rows[0][1:]
    matrix = {r[0]: [int(v) for v in r[1:]] for r in rows[1:]}
    assert sorted(classes) == sorted(counts) and list(matrix) == classes
    assert {name: sum(row) for name, row in matrix.items()} == counts
    diagonal = sum(matrix[name][i] for i, name in enumerate(classes))
    assert 100 * diagonal / sum(counts.values()) == pytest.approx(a["top1"], abs=0.01)
    assert {c["class"]: c["videos"] for c in a["per_class"]} == counts
    assert json.loads((out / "a" / "eval.json").read_text()) == a
    assert (out / "a" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    off = sorted((v for n, row in matrix.items() for j, v in enumerate(row) if classes[j] != n and v), reverse=True)
    assert [p["videos"] for p in a["most_confused"]] == off[:10]


def test_saved_scores_name_every_video_with_its_label(two_runs, synth):
    out, a, _ = two_runs
    saved = json.loads((out / "a.json").read_text())
    assert saved["views"] == "1x1" and len(saved["videos"]) == a["scored"] == 8
    for video in saved["videos"]:
        assert video["label"] in saved["classes"] and video["path"].endswith(".mp4")
        assert sum(video["scores"]) == pytest.approx(1, abs=1e-4)  # views' probabilities averaged


def test_combining_two_score_files_equals_averaging(two_runs, tmp_path):
    out, _, _ = two_runs
    combined = sfcli("eval", "--scores", str(out / "a.json"), str(out / "b.json"), "--json",
                     "--save-scores", str(tmp_path / "ab.json"))
    assert combined.returncode == 0, combined.stderr
    result = json.loads(combined.stdout)
    a, b, ab = (json.loads(p.read_text()) for p in (out / "a.json", out / "b.json", tmp_path / "ab.json"))
    b_rows = {v["path"]: v["scores"] for v in b["videos"]}
    for video in ab["videos"]:
        a_row = next(v["scores"] for v in a["videos"] if v["path"] == video["path"])
        expected = [(x + y) / 2 for x, y in zip(a_row, b_rows[video["path"]])]
        assert video["scores"] == pytest.approx(expected, abs=1e-6)
    hits = sum(max(range(4), key=v["scores"].__getitem__) == ab["classes"].index(v["label"]) for v in ab["videos"])
    assert result["top1"] == pytest.approx(100 * hits / 8, abs=0.01)
    assert result["views"] == "1x1+2x3" and result["scored"] == 8


def test_scores_of_other_classes_do_not_combine(two_runs, tmp_path):
    out, _, _ = two_runs
    other = json.loads((out / "a.json").read_text())
    renamed = other["classes"][0]
    other["classes"][0] = "something else"
    for video in other["videos"]:
        video["label"] = "something else" if video["label"] == renamed else video["label"]
    (tmp_path / "other.json").write_text(json.dumps(other))
    line = one_line_error(sfcli("eval", "--scores", str(out / "a.json"), str(tmp_path / "other.json")))
    assert "other classes" in line
    line = one_line_error(sfcli("eval", "--scores"))
    assert "--save-scores" in line

"""`sfcli infer` and `sfcli convert` on real video files, with checkpoints of every layout."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import frame_number, one_line_error, sfcli, write_video

from sfcli import checkpoint as ck
from sfcli import data
from sfcli.data import ClipConfig
from sfcli.files import load_checkpoint, save_checkpoint
from sfcli.infer import infer_video
from sfcli.layouts import translate
from sfcli.predict import load_predictor, view_probabilities
from sfcli.presets import Preset, create_model
from sfcli.videolist import read_video_list

CLASSES = ["a", "b", "c", "d"]


def tiny_checkpoint(path, classes, seed=0):
    """A random-weights slowfast_tiny sfcli checkpoint tested on small views (fast on the CPU)."""
    torch.manual_seed(seed)
    model = create_model("slowfast_tiny", num_classes=len(classes))
    clip = Preset(model.cfg).clip_config(crop=32)  # the paper's pipeline at 32 px
    return save_checkpoint(path, ck.make_payload(model, classes, "slowfast_tiny", clip=dataclasses.asdict(clip)))


@pytest.fixture(scope="module")
def four_class(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "four.pt", CLASSES)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    good = [write_video(root / "folder" / f"good{i}.mp4", num_frames=40, size=(48, 64)) for i in range(2)]
    (root / "folder" / "bad.mp4").write_text("this is text, not a video\n")
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is text, not a video\n")
    long = write_video(root / "long.mp4", num_frames=150, size=(48, 64))  # 5 s at 30 fps
    return root, good, long


def infer_json(*args):
    result = sfcli("infer", *args, "--json")
    return result, (json.loads(result.stdout) if result.stdout.strip() else [])


def test_top_k_never_exceeds_the_classes_in_json_and_table(four_class, videos):
    _, good, _ = videos
    result, out = infer_json(str(good[0]), "--checkpoint", str(four_class), "--top-k", "10", "--views", "2x3")
    assert result.returncode == 0, result.stderr
    (video,) = out
    assert set(video) == {"video", "seconds", "fps", "predictions", "windows", "warnings"} and video["windows"] == []
    # 40 frames at 30 fps against the 64-frame span of 32 frames at stride 2
    assert video["warnings"] == [
        f"{good[0]}: 40 frames, shorter than the 64-frame clip span: its last frame is repeated"]
    assert video["video"] == str(good[0])
    assert video["fps"] == pytest.approx(30) and video["seconds"] == pytest.approx(40 / 30, abs=0.01)
    assert [set(p) for p in video["predictions"]] == [{"label", "score"}] * 4
    assert sorted(p["label"] for p in video["predictions"]) == CLASSES
    scores = [p["score"] for p in video["predictions"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-3)
    table = sfcli("infer", str(good[0]), "--checkpoint", str(four_class), "--top-k", "10", "--views", "1x1")
    assert table.returncode == 0 and sum(f"│ {c} " in table.stdout for c in CLASSES) == 4


def test_a_folder_with_one_bad_video_gives_two_results_one_error_line_and_exit_1(four_class, videos):
    root, _, _ = videos
    result, out = infer_json(str(root / "folder"), "--checkpoint", str(four_class), "--views", "1x1")
    assert result.returncode == 1
    assert [Path(r.get("video") or r["path"]).name for r in out] == ["bad.mp4", "good0.mp4", "good1.mp4"]
    assert out[0]["reason"] == "not a video file" and "pyav: " in out[0]["details"]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "bad.mp4" in errors[0] and "cannot be decoded" in errors[0]
    assert "Traceback" not in result.stderr


def test_each_unreadable_video_is_named_with_its_reason_and_the_rest_are_scored(four_class, videos):
    root, good, _ = videos
    bad = {"empty.mp4": "empty file", "text.mp4": "cannot be decoded", "missing.mp4": "no such file"}
    result, out = infer_json(*(str(root / name) for name in bad), str(good[0]), "--checkpoint", str(four_class),
                             "--views", "1x1")
    assert result.returncode == 1 and out[-1]["video"] == str(good[0])
    # Listed as eval lists an excluded video: the decoders' messages where they ran.
    assert [(Path(r["path"]).name, r["reason"], bool(r["details"])) for r in out[:-1]] == [
        ("empty.mp4", "empty file (0 bytes)", False), ("text.mp4", "not a video file", True),
        ("missing.mp4", "no such file", False)]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in result.stderr
    for line, (name, reason) in zip(errors, bad.items()):
        assert name in line and reason in line


def test_windows_cover_the_video(four_class, videos):
    _, _, long = videos
    result, out = infer_json(str(long), "--checkpoint", str(four_class), "--views", "1x1", "--window", "2",
                             "--stride", "1.5", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    (video,) = out
    assert video["seconds"] == pytest.approx(5)
    assert [(w["start"], w["end"]) for w in video["windows"]] == [(0, 2), (1.5, 3.5), (3, 5)]
    assert all(set(w) == {"start", "end", "predictions"} and len(w["predictions"]) == 2 for w in video["windows"])
    assert len(video["predictions"]) == 2
    table = sfcli("infer", str(long), "--checkpoint", str(four_class), "--views", "1x1", "--window", "2")
    assert table.returncode == 0 and all(f"{s} s" in table.stdout for s in ("0.0-2.0", "2.0-4.0", "4.0-5.0"))


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_a_window_decodes_only_its_own_frames(videos, decoder):
    """Clips placed uniformly inside the window's frames (PyAV seeks to the key frame before them)."""
    _, _, long = videos
    clip = ClipConfig(frames=8, stride=2, test_short=48, test_crop=48, num_clips=2, num_crops=1)
    views = data.test_views(long, clip, decoder, seconds=(3, 5))[0]  # frames 90 to 149
    frames = [[frame_number(views[v, :, t]) for t in range(clip.frames)] for v in range(2)]
    # The reference's starts within the window's 60 frames: a 14-frame window leaves 46 free, clip 1
    # of 2 starts at 23 (frames 113-127; its last pick, 15, clamped to the 15 frames decoded).
    assert frames[0][0] == 90 and frames[1] == [113, 115, 117, 119, 121, 123, 125, 127]
    assert all(90 <= f < 150 for clip_frames in frames for f in clip_frames)


def test_pyav_and_decord_give_the_same_windows(four_class, videos):
    _, _, long = videos
    predictor = load_predictor(four_class, views=(1, 3), device="cpu")
    a, b = (infer_video(predictor, long, window=1.5, decoder=d) for d in ("decord", "pyav"))
    assert a == b and len(a.windows) == 4


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


def test_convert_round_trip_and_foreign_weights_with_arch(videos, tmp_path):
    _, good, _ = videos
    torch.manual_seed(1)
    model = create_model("slowfast_tiny", num_classes=4)
    foreign = tmp_path / "pyslowfast.pyth"
    torch.save({"model_state": translate(model.state_dict(), "sfcli", "pyslowfast"), "epoch": 3}, foreign)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(CLASSES))
    converted = tmp_path / "converted.pt"
    result = sfcli("convert", str(foreign), str(converted), "--arch", "slowfast_tiny", "--labels", str(labels),
                   "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["format"] == "pyslowfast"
    loaded = load_checkpoint(converted)
    assert loaded["classes"] == CLASSES and loaded["arch"] == "slowfast_tiny"
    assert loaded["model"].keys() == model.state_dict().keys()
    assert all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())
    a = infer_json(str(good[0]), "--weights", str(foreign), "--arch", "slowfast_tiny", "--labels", str(labels),
                   "--views", "1x1")[1]
    b = infer_json(str(good[0]), "--checkpoint", str(converted), "--views", "1x1")[1]
    assert a[0]["predictions"] == b[0]["predictions"]


def test_at_most_one_source_of_weights_and_none_is_the_default_network(videos, tmp_path):
    _, good, _ = videos
    assert "at most one" in one_line_error(sfcli("infer", str(good[0]), "--checkpoint", "a", "--weights", "b"))
    offline = {"SFCLI_WEIGHTS_URL": "http://127.0.0.1:9/", "TORCH_HOME": str(tmp_path)}
    assert "cannot download slowfast_8x8_r50_k400" in one_line_error(sfcli("infer", str(good[0]), env=offline))


def test_infer_on_a_run_folder_agrees_with_eval(synth, tmp_path):
    """The same views and scores as `sfcli eval`: infer's top-1 over the validation folder is
    eval's top-1."""
    classes = read_video_list(synth / "val.csv").classes
    run = tmp_path / "run"
    tiny_checkpoint(run / "checkpoint.pt", classes, seed=2)
    result, out = infer_json(str(synth / "val"), "--checkpoint", str(run), "--views", "2x3", "--top-k", "1")
    assert result.returncode == 0, result.stderr
    right = [Path(r["video"]).parent.name == r["predictions"][0]["label"] for r in out]
    evaluated = sfcli("eval", "--checkpoint", str(run), "--data", str(synth / "val.csv"), "--views", "2x3",
                      "--workers", "0", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert len(right) == 8 and 100 * sum(right) / len(right) == json.loads(evaluated.stdout)["top1"]


def test_infer_names_the_right_class_of_held_out_videos_after_training(tmp_path):
    """`sfcli train` on synth data (a shape class and a motion class), then `sfcli infer` on its
    held-out videos: right for most of them (measured: 9 of 10)."""
    from sfcli.synth import write_dataset

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
    assert len(right) == 10 and sum(right) >= 8


def test_identical_views_run_once_and_score_as_each_would():
    """A video shorter than the clip span: its temporal clips are the same frames."""
    torch.manual_seed(0)
    model = create_model("slowfast_tiny", num_classes=5).eval()
    clip = Preset(model.cfg, crop=48, test_crop=48).clip_config()
    distinct = torch.randint(0, 256, (3, 3, clip.frames, 48, 48), dtype=torch.uint8)
    views = distinct[[0, 1, 0, 2, 1, 0]]
    batches = []
    model.register_forward_hook(lambda m, args, out: batches.append(len(args[0])))
    probs = view_probabilities(model, views, clip, torch.device("cpu"))
    assert batches == [3]  # each distinct view through the network once
    one_by_one = torch.cat([view_probabilities(model, v[None], clip, torch.device("cpu")) for v in views])
    assert torch.allclose(probs, one_by_one, atol=1e-6) and probs.shape == (6, 5)
    assert torch.equal(probs[0], probs[2]) and torch.equal(probs[0], probs[5]) and not torch.equal(probs[0], probs[1])

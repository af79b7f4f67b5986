"""Training and evaluation through the CLI: the run folder, exact resume after SIGKILL, signals,
NaN, bad videos, torchrun with two processes, and the errors a user can cause."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import one_line_error, sfcli

from sfcli.files import load_checkpoint

TRAIN = ["--arch", "slowfast_tiny", "--crop", "32", "--batch-size", "4", "--workers", "0", "--views", "2x3"]


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory):
    """A finished 1-epoch run with validation, and its summary."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    result = sfcli("train", "--data", str(synth), *TRAIN, "--epochs", "1", "--out", str(run), "--json")
    assert result.returncode == 0, result.stderr
    return run, json.loads(result.stdout)


def weights(run):
    return load_checkpoint(Path(run) / "checkpoint.pt")["model"]


# ----------------------------------------------------------------------------- a run


def test_run_folder_holds_config_metrics_checkpoint_and_test(trained, synth):
    run, summary = trained
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "slowfast_tiny"
    assert config["classes"] == sorted((synth / "classes.txt").read_text().splitlines())
    assert config["model"]["num_classes"] == 4 and config["clip"]["crop"] == 32
    assert config["data"]["train"].endswith("train.csv") and config["data"]["val"].endswith("val.csv")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["epoch"] == 1
    assert {"loss", "lr", "train_top1", "val_top1", "val_top5", "seconds", "clips_per_s"} <= set(lines[0])
    assert json.loads((run / "bad_videos.json").read_text()) == []
    assert summary["test"]["views"] == "2x3" and summary["test"]["scored"] == 8
    assert len(summary["test"]["per_class"]) == 4
    assert json.loads((run / "test.json").read_text()) == summary["test"]


def test_a_finished_run_is_not_trained_again(trained, synth):
    run, summary = trained
    before = (run / "checkpoint.pt").stat().st_mtime_ns
    again = sfcli("train", "--data", str(synth), *TRAIN, "--epochs", "1", "--out", str(run), "--json")
    assert again.returncode == 0, again.stderr
    assert (run / "checkpoint.pt").stat().st_mtime_ns == before
    assert json.loads(again.stdout)["history"] == summary["history"]


def test_other_settings_on_an_existing_run_folder_are_refused(trained, synth):
    run, _ = trained
    line = one_line_error(sfcli("train", "--data", str(synth), *TRAIN, "--epochs", "2", "--out", str(run)))
    assert "train.epochs" in line and "--out" in line


def test_eval_counts_every_video_once_with_its_views(trained, synth):
    run, summary = trained
    result = sfcli("eval", "--checkpoint", str(run), "--data", str(synth / "val.csv"), "--views", "2x3",
                   "--workers", "0", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["scored"] == 8 and out["excluded"] == 0 and out["views"] == "2x3"
    assert out["top1"] == summary["test"]["top1"] and out["top5"] == summary["test"]["top5"]
    assert sum(c["videos"] for c in out["per_class"]) == 8
    hits = sum(c["top1"] * c["videos"] / 100 for c in out["per_class"])
    assert hits == pytest.approx(out["top1"] * 8 / 100)


def test_bad_videos_are_quarantined_in_training_and_excluded_in_eval(synth, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth / "train", data / "train")
    (data / "train" / "ring" / "empty_000000_000002.mp4").write_bytes(b"")
    (data / "train" / "ring" / "text_000000_000002.mp4").write_text("not a video\n")
    rows = (synth / "train.csv").read_text().splitlines()
    rows += ["ring,empty,0,2,train", "ring,text,0,2,train"]
    (data / "train.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    result = sfcli("train", "--data", str(data / "train.csv"), *TRAIN, "--epochs", "2", "--out", str(run))
    assert result.returncode == 0, result.stderr
    bad = json.loads((run / "bad_videos.json").read_text())
    assert sorted(Path(b["path"]).name for b in bad) == ["empty_000000_000002.mp4", "text_000000_000002.mp4"]
    assert all(b["reason"] for b in bad)
    assert "videos quarantined in training" in result.stdout and "empty_000000_000002.mp4" in result.stdout

    evaluated = sfcli("eval", "--checkpoint", str(run), "--data", str(data / "train.csv"), "--views", "1x1",
                      "--workers", "0", "--json")
    out = json.loads(evaluated.stdout)
    assert out["excluded"] == 2 and out["scored"] == 16
    assert sorted(Path(b["path"]).name for b in out["excluded_videos"]) == [
        "empty_000000_000002.mp4", "text_000000_000002.mp4"]


def test_scoring_a_video_does_not_import_the_train_loop():
    code = "import sys, sfcli.infer; print(sorted(m for m in sys.modules if m.startswith('sfcli.')))"
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "sfcli.predict" in modules and "sfcli.training" not in modules and "sfcli.recipe" not in modules


# ----------------------------------------------------------------------------- interruptions


def wait_for_checkpoint(run: Path, process, at_least_steps: int, timeout: float = 120):
    """Poll the run's checkpoint until it has finished `at_least_steps` steps in all."""
    began = time.time()
    while time.time() - began < timeout:
        assert process.poll() is None, process.communicate()
        path = run / "checkpoint.pt"
        if path.exists():
            state = load_checkpoint(path)["run_state"]
            if state["epoch"] * 4 + state["step"] >= at_least_steps:
                return state
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared in time")


def start(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "sfcli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_sigkill_mid_epoch_then_resume_gives_exactly_the_uninterrupted_weights(synth, tmp_path):
    args = ["--data", str(synth / "train.csv"), *TRAIN, "--epochs", "2", "--checkpoint-every", "1"]
    whole = sfcli("train", *args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr

    run = tmp_path / "killed"
    process = start("train", *args, "--out", str(run))
    state = wait_for_checkpoint(run, process, at_least_steps=2)  # mid-epoch 1 (4 steps per epoch)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state["epoch"] * 4 + state["step"] < 8
    resumed = sfcli("train", *args, "--out", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr

    a, b = weights(tmp_path / "whole"), weights(run)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = [(folder / "metrics.jsonl").read_text().count("\n") for folder in (tmp_path / "whole", run)]
    assert lines == [2, 2]


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(synth, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(synth / "train.csv"), *TRAIN, "--epochs", "3", "--checkpoint-every", "1",
            "--out", str(run)]
    process = start(*args)
    wait_for_checkpoint(run, process, at_least_steps=1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr and "run the same command to resume" in stderr
    state = load_checkpoint(run / "checkpoint.pt")["run_state"]
    assert state["epoch"] * 4 + state["step"] < 12
    assert sfcli(*args).returncode == 0
    assert load_checkpoint(run / "checkpoint.pt")["run_state"]["epoch"] == 3


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(synth, tmp_path):
    run = tmp_path / "run"
    result = sfcli("train", "--data", str(synth / "train.csv"), *TRAIN, "--epochs", "1", "--checkpoint-every", "1",
                   "--lr", "1e30", "--out", str(run))
    line = one_line_error(result)
    assert "loss became" in line and "last good checkpoint" in line
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert checkpoint["run_state"]["step"] >= 1
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())


# ----------------------------------------------------------------------------- errors a user can cause


def test_wrong_data_is_one_clear_sentence(tmp_path):
    line = one_line_error(sfcli("train", "--data", str(tmp_path / "nope.csv"), *TRAIN, "--out", str(tmp_path / "r")))
    assert "nope.csv" in line
    (tmp_path / "bad.csv").write_text("label,youtube_id,time_start,time_end,split\nring,abc,zero,2,train\n")
    line = one_line_error(sfcli("train", "--data", str(tmp_path / "bad.csv"), *TRAIN, "--out", str(tmp_path / "r")))
    assert "bad.csv" in line and "line 2" in line


@pytest.mark.parametrize("option, value, words", [("--views", "2y3", "CLIPSxCROPS"),
                                                   ("--val-views", "1x4", "1 to 3 crops")])
def test_views_that_are_not_clips_x_crops_are_refused(synth, tmp_path, option, value, words):
    result = sfcli("train", "--data", str(synth), *TRAIN, option, value, "--out", str(tmp_path / "r"))
    line = one_line_error(result)
    assert result.returncode == 2 and words in line and repr(value) in line
    assert not (tmp_path / "r").exists()


def test_num_classes_that_disagree_with_the_labels_are_refused(trained, synth, tmp_path):
    line = one_line_error(sfcli("train", "--data", str(synth), *TRAIN, "--num-classes", "3",
                                "--out", str(tmp_path / "r")))
    assert "3 outputs" in line and "4 classes" in line
    run, _ = trained
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    line = one_line_error(sfcli("eval", "--checkpoint", str(run), "--data", str(synth / "val.csv"),
                                "--labels", str(labels)))
    assert "3 classes" in line and "4 outputs" in line


def test_eval_refuses_a_checkpoint_of_another_architecture(trained, synth):
    run, _ = trained
    line = one_line_error(sfcli("eval", "--checkpoint", str(run), "--data", str(synth / "val.csv"),
                                "--arch", "slowfast_8x8_r50"))
    assert "slowfast_tiny" in line and "slowfast_8x8_r50" in line


def test_eval_refuses_data_whose_labels_the_checkpoint_does_not_know(trained, tmp_path):
    run, _ = trained
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\nskydiving,abc,0,2,val\n")
    line = one_line_error(sfcli("eval", "--checkpoint", str(run), "--data", str(tmp_path / "val.csv")))
    assert "skydiving" in line


# ----------------------------------------------------------------------------- torchrun


def test_torchrun_two_processes_train_in_sync_and_eval_like_one(synth, tmp_path):
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "sfcli")
    run = tmp_path / "ddp"
    result = sfcli("train", "--data", str(synth / "train.csv"), *TRAIN, "--epochs", "1", "--device", "cpu",
                   "--out", str(run), "--json", launcher=torchrun)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # rank 0 alone prints
    assert len(summary["rank_checksums"]) == 2
    assert summary["rank_checksums"][0] == summary["rank_checksums"][1]

    def eval_json(launcher):
        out = sfcli("eval", "--checkpoint", str(run), "--data", str(synth / "train.csv"), "--views", "2x3",
                    "--workers", "0", "--device", "cpu", "--json", launcher=launcher)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    one, two = eval_json((sys.executable, "-m", "sfcli")), eval_json(torchrun)
    assert two["scored"] == one["scored"] == 16
    for key in ("top1", "top5", "per_class", "excluded"):
        assert two[key] == one[key]


def test_val_every_validates_those_epochs_and_the_last(synth, tmp_path):
    run = tmp_path / "run"
    result = sfcli("train", "--data", str(synth), *TRAIN, "--epochs", "3", "--val-every", "2",
                   "--views", "1x1", "--out", str(run))
    assert result.returncode == 0, result.stderr
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e.get("val_top1") is not None for e in epochs] == [False, True, True]
    assert load_checkpoint(run / "best.pt")["epoch"] in (2, 3)  # only validated epochs can be the best

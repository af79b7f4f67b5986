"""The train/eval loop: the recipe, the run folder, exact resume after SIGKILL, signals, NaN,
bad videos, torchrun with two processes, and the errors a user can cause."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sfcli import engine
from sfcli.checkpoint import load_checkpoint
from sfcli.model import create_model
from conftest import one_line_error, sfcli

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


# ----------------------------------------------------------------------------- the recipe


def test_learning_rate_warms_up_linearly_then_follows_the_half_cosine():
    total, warm, base = 100, 10, 0.4
    lrs = [engine.learning_rate(s, total, warm, base) for s in range(total)]
    assert lrs[0] == pytest.approx(base * 0.01 / 1.6)
    steps = [b - a for a, b in zip(lrs[:warm], lrs[1 : warm + 1])]
    assert all(d == pytest.approx(steps[0]) for d in steps)  # a straight line up to the cosine
    for s in (warm, 50, 99):
        assert lrs[s] == pytest.approx(base * 0.5 * (math.cos(math.pi * s / total) + 1))
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1 :]))


def test_base_lr_scales_with_the_total_batch():
    assert engine.TrainConfig(batch_size=64).base_lr == pytest.approx(0.1)
    assert engine.TrainConfig(batch_size=16).base_lr == pytest.approx(0.025)
    assert engine.TrainConfig(batch_size=16, lr=0.3).base_lr == 0.3


def test_optimizer_is_nesterov_sgd_without_decay_on_batch_norm_and_biases():
    model = create_model("slowfast_tiny", num_classes=3)
    opt = engine.make_optimizer(model, engine.TrainConfig(weight_decay=1e-4))
    decay, no_decay = opt.param_groups
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    bn_and_bias = {id(p) for name, p in model.named_parameters() if p.ndim == 1}
    assert {id(p) for p in no_decay["params"]} == bn_and_bias
    assert id(model.fc.bias) in bn_and_bias and id(model.fc.weight) not in bn_and_bias
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_fused_optimizer_steps_like_torchs_default_sgd():
    """The fused SGD that sfcli trains with takes the steps of torch's default implementation of
    the same recipe (the one PySlowFast uses): same weights after three steps."""
    torch.manual_seed(0)
    model = create_model("slowfast_tiny", num_classes=3)
    twin = create_model("slowfast_tiny", num_classes=3)
    twin.load_state_dict(model.state_dict())
    recipe = engine.TrainConfig(lr=0.1, weight_decay=1e-2)
    ours = engine.make_optimizer(model, recipe)
    assert ours.defaults["fused"]
    plain = torch.optim.SGD([{"params": g["params"], "weight_decay": g["weight_decay"]}
                             for g in engine.make_optimizer(twin, recipe).param_groups],
                            lr=0.1, momentum=0.9, nesterov=True, foreach=False)
    for _ in range(3):
        for net in (model, twin):
            for p in net.parameters():  # laid out like the parameter, as autograd lays out gradients
                grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()))
                p.grad = torch.empty_like(p).copy_(grad)
        ours.step()
        plain.step()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(model.fc.weight, create_model("slowfast_tiny", num_classes=3).fc.weight)


def test_cpu_mixed_precision_only_where_the_cpu_has_native_bf16():
    with engine.autocast(torch.device("cpu"), amp=True):
        assert torch.is_autocast_enabled("cpu") == engine.cpu_has_bf16()
    with engine.autocast(torch.device("cpu"), amp=False):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_freed_memory_is_kept_by_the_process():
    # A fresh interpreter, so that this test process keeps its default allocator.
    code = "from sfcli import engine; print(engine.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_batches_split_into_disjoint_shares_per_process():
    order = engine.epoch_order(22, seed=3, epoch=1)
    assert sorted(order) == list(range(22)) and order != engine.epoch_order(22, seed=3, epoch=2)
    single = engine.rank_batches(order, 4, 0, 1)
    shares = [engine.rank_batches(order, 4, r, 2) for r in range(2)]
    assert len(single) == 5  # the last partial batch (2 videos) is dropped
    for step, batch in enumerate(single):
        assert shares[0][step] + shares[1][step] == batch


# ----------------------------------------------------------------------------- a run


def test_run_folder_holds_config_metrics_checkpoint_and_test(trained, synth):
    run, summary = trained
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "slowfast_tiny" and config["classes"] == sorted((synth / "classes.txt").read_text().splitlines())
    assert config["model"]["num_classes"] == 4 and config["clip"]["crop"] == 32
    assert config["data"]["train"].endswith("train.csv") and config["data"]["val"].endswith("val.csv")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["epoch"] == 1
    assert {"loss", "lr", "train_top1", "val_top1", "val_top5", "seconds", "clips_per_s"} <= set(lines[0])
    assert json.loads((run / "bad_videos.json").read_text()) == []
    assert summary["test"]["views"] == "2x3" and summary["test"]["scored"] == 8
    assert len(summary["test"]["per_class"]) == 4


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
    assert (tmp_path / "whole" / "metrics.jsonl").read_text().count("\n") == run.joinpath("metrics.jsonl").read_text().count("\n") == 2


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


def test_num_classes_that_disagree_with_the_labels_are_refused(trained, synth, tmp_path):
    line = one_line_error(sfcli("train", "--data", str(synth), *TRAIN, "--num-classes", "3", "--out", str(tmp_path / "r")))
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

"""--class-balance: inverse-frequency loss weights, a sampler that draws classes uniformly, and a
balanced run killed with SIGKILL that resumes bit-exact."""

import json
import signal

import pytest
import torch
from conftest import sfcli
from test_train import TRAIN, start, wait_for_checkpoint, weights

from sfcli.balance import ClassBalance, make_balance
from sfcli.errors import TrainingError
from sfcli.videolist import VideoList


def test_loss_weights_are_inverse_class_frequencies():
    weight = ClassBalance("weights", (0, 0, 0, 1), 3).loss_weight
    assert torch.allclose(weight, torch.tensor([4 / 6, 2.0, 0.0]))  # N / (C present * n_c); absent: 0
    assert torch.equal(ClassBalance("weights", (0, 1, 1, 0), 2).loss_weight, torch.ones(2))
    assert ClassBalance("sampler", (0, 1), 2).loss_weight is None


def test_the_sampler_draws_classes_uniformly_and_the_same_epoch_again():
    sampler = ClassBalance("sampler", tuple([0] * 900 + [1] * 100), 2)
    order = sampler.order(seed=0, epoch=3)
    assert len(order) == 1000 and 400 < sum(i >= 900 for i in order) < 600  # 10% of the videos, half the draws
    assert order == sampler.order(seed=0, epoch=3) and order != sampler.order(seed=0, epoch=4)
    assert ClassBalance("weights", (0, 1), 2).order(0, 0) is None


def test_a_multi_label_list_cannot_be_balanced(tmp_path):
    videos = VideoList([tmp_path / "a.mp4"], [(1, 0)], ["a", "b"], "multi-label-csv", tmp_path / "list.csv")
    with pytest.raises(TrainingError, match="one class per video"):
        make_balance("weights", videos)
    assert make_balance("none", videos) is None


@pytest.mark.parametrize("mode", ["sampler"])
def test_a_killed_balanced_run_resumes_bit_exact(synth, tmp_path, mode):
    args = ["train", "--data", str(synth / "train.csv"), *TRAIN, "--width", "8", "--epochs", "1",
            "--checkpoint-every", "1", "--class-balance", mode]
    whole = sfcli(*args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["class_balance"] == mode
    run = tmp_path / "killed"
    process = start(*args, "--out", str(run))
    state = wait_for_checkpoint(run, process, at_least_steps=1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state["step"] < 4
    resumed = sfcli(*args, "--out", str(run))
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "whole"), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

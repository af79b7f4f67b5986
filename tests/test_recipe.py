"""The recipe: the learning-rate schedule, the optimizer, and each process's share of an epoch's
batches."""

import json
import math

import pytest
import torch
from conftest import sfcli

from sfcli.files import load_checkpoint
from sfcli.presets import create_model
from sfcli.recipe import TrainConfig, epoch_order, learning_rate, make_optimizer, rank_batches


def test_learning_rate_warms_up_linearly_then_follows_the_half_cosine():
    total, warm, base = 100, 10, 0.4
    lrs = [learning_rate(s, total, warm, base) for s in range(total)]
    assert lrs[0] == pytest.approx(base * 0.01 / 0.1)  # the reference's WARMUP_START_LR / BASE_LR
    steps = [b - a for a, b in zip(lrs[:warm], lrs[1 : warm + 1])]
    assert all(d == pytest.approx(steps[0]) for d in steps)  # a straight line up to the cosine
    for s in (warm, 50, 99):
        assert lrs[s] == pytest.approx(base * 0.5 * (math.cos(math.pi * s / total) + 1))
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1 :]))


def test_base_lr_scales_with_the_total_batch():
    assert TrainConfig(batch_size=64).base_lr == pytest.approx(0.1)
    assert TrainConfig(batch_size=16).base_lr == pytest.approx(0.025)
    assert TrainConfig(batch_size=16, lr=0.3).base_lr == 0.3


def test_optimizer_is_nesterov_sgd_without_decay_on_batch_norm_only():
    model = create_model("slowfast_tiny", num_classes=3, nonlocal_res4=(0,))
    opt = make_optimizer(model, TrainConfig(weight_decay=1e-4))
    decay, no_decay = opt.param_groups
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    bn = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d) for p in m.parameters()}
    assert {id(p) for p in no_decay["params"]} == bn
    # As the reference: the classifier's bias and the non-local convs' biases decay.
    decayed = {id(p) for p in decay["params"]}
    nonlocal_block = model.slow.stages[2][1]
    assert {id(model.fc.bias), id(nonlocal_block.theta.bias), id(nonlocal_block.out.conv.bias)} <= decayed
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_fused_optimizer_steps_like_torchs_default_sgd():
    """The fused SGD that sfcli trains with takes the steps of torch's default implementation of
    the same recipe (the one PySlowFast uses): same weights after three steps."""
    torch.manual_seed(0)
    model = create_model("slowfast_tiny", num_classes=3)
    twin = create_model("slowfast_tiny", num_classes=3)
    twin.load_state_dict(model.state_dict())
    recipe = TrainConfig(lr=0.1, weight_decay=1e-2)
    ours = make_optimizer(model, recipe)
    assert ours.defaults["fused"]
    plain = torch.optim.SGD([{"params": g["params"], "weight_decay": g["weight_decay"]}
                             for g in make_optimizer(twin, recipe).param_groups],
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


def test_batches_split_into_disjoint_shares_per_process():
    order = epoch_order(22, seed=3, epoch=1)
    assert sorted(order) == list(range(22)) and order != epoch_order(22, seed=3, epoch=2)
    single = rank_batches(order, 4, 0, 1)
    shares = [rank_batches(order, 4, r, 2) for r in range(2)]
    assert len(single) == 5  # the last partial batch (2 videos) is dropped
    for step, batch in enumerate(single):
        assert shares[0][step] + shares[1][step] == batch


def test_precise_bn_recomputes_the_statistics_of_the_trained_network(synth, tmp_path):
    """--precise-bn 2: after the epoch (4 steps of 4 clips) every BN layer's statistics are the
    average of 2 fresh batches, so each layer has counted 2 batches, not the epoch's 4."""
    run = tmp_path / "run"
    result = sfcli("train", "--data", str(synth / "train.csv"), "--arch", "slowfast_tiny", "--crop", "32",
                   "--batch-size", "4", "--workers", "0", "--epochs", "1", "--precise-bn", "2", "--out", str(run))
    assert result.returncode == 0, result.stderr
    counts = {int(v) for k, v in load_checkpoint(run / "checkpoint.pt")["model"].items()
              if k.endswith("num_batches_tracked")}
    assert counts == {2}
    assert json.loads((run / "config.json").read_text())["train"]["precise_bn"] == 2

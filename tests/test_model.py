"""The model module: every variant builds and runs, sizes and costs match the paper."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from sfcli.cost import count_gflops, describe
from sfcli.errors import ConfigError
from sfcli.memory_formats import FrameTapsConv3d
from sfcli.model import Bottleneck
from sfcli.model_config import FAST_INPUTS, LATERALS
from sfcli.presets import PRESETS, build_config, create_model

TINY = dict(num_classes=5)
CLIP = (2, 3, 32, 32, 32)  # slowfast_tiny: alpha 8 x T 4 = 32 Fast-rate frames


def variants():
    for lateral in LATERALS:
        for fast_input in FAST_INPUTS:
            yield dict(pathway="slowfast", lateral=lateral, fast_input=fast_input)
    yield dict(pathway="slow")
    for fast_input in FAST_INPUTS:
        yield dict(pathway="fast", fast_input=fast_input)


@pytest.mark.parametrize("overrides", list(variants()), ids=lambda o: "-".join(o.values()))
def test_every_variant_forward_shape(overrides):
    model = create_model("slowfast_tiny", **TINY, **overrides).eval()
    with torch.no_grad():
        out = model(torch.randn(CLIP))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_backward_step_updates_every_parameter():
    torch.manual_seed(0)
    model = create_model("slowfast_tiny", **TINY, dropout=0.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # two steps: the zero-initialised BN gammas unblock their branches first
        loss = nn.functional.cross_entropy(model(torch.randn(CLIP)), torch.tensor([0, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


def test_initialisation_follows_the_reference():
    model = create_model("slowfast_tiny", zero_init_residual=True, **TINY)
    assert abs(model.fc.weight.std().item() - 0.01) < 0.003 and model.fc.bias.abs().sum() == 0
    for block in (m for m in model.modules() if isinstance(m, Bottleneck)):
        assert block.branch2[-1][1].weight.abs().sum() == 0  # zero-init final BN
        assert block.branch2[0][1].weight.eq(1).all()
    conv = model.slow.stages[0][0].branch2[0][0]  # He fan-out: std = sqrt(2 / (c_out * k))
    fan_out = conv.out_channels * conv.weight[0, 0].numel()
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.2)
    plain = create_model("slowfast_tiny", **TINY)  # the small preset starts its blocks unzeroed
    assert all(b.branch2[-1][1].weight.eq(1).all() for b in plain.modules() if isinstance(b, Bottleneck))


def test_fast_and_slow_pathways_see_their_frames():
    cfg = build_config("slowfast_4x16_r50")
    assert (cfg.fast_frames, cfg.fast_stride, cfg.frames, cfg.tau) == (32, 2, 4, 16)
    cfg8 = build_config("slowfast_8x8_r50")
    assert (cfg8.alpha, cfg8.fast_frames, cfg8.fast_stride, cfg8.fusion_kernel) == (4, 32, 2, 7)


@pytest.mark.parametrize("arch, params", [
    ("slowfast_4x16_r50", 34_480_216),
    ("slowfast_8x8_r50", 34_566_488),
    ("slow_4x16_r50", 32_454_096),
    ("slow_8x8_r50", 32_454_096),
    ("slowfast_8x8_r101", 62_826_968),
])
def test_parameter_counts_exactly(arch, params):
    assert describe(PRESETS[arch].model, arch)["params"] == params


# GFLOPs (multiply-adds x 1e-9) of one 256^2 test view, paper Tables 2 and 5.
PAPER_GFLOPS = [
    ("slowfast_4x16_r50", {}, 36.1),
    ("slowfast_8x8_r50", {}, 65.7),
    ("slow_4x16_r50", {}, 27.3),
    ("slow_8x8_r50", {}, 54.5),
    ("slowfast_16x8_r101", {}, 213),
    ("slowfast_8x8_r101", {}, 127.2),  # PyTorchVideo's zoo figure for its all-temporal R101
    ("slowfast_8x8_r101", {"temporal_res4": 6}, 106),  # the paper's R101 ("_50_50" reference model)
    ("slowfast_4x16_r50", {"beta": "1/4"}, 54.5),
    ("slowfast_4x16_r50", {"beta": "1/12"}, 32.8),
    ("slowfast_4x16_r50", {"beta": "1/16"}, 30.6),
    ("slowfast_4x16_r50", {"beta": "1/32"}, 28.6),
    ("slowfast_4x16_r50", {"lateral": "none"}, 34.2),
    ("slowfast_4x16_r50", {"lateral": "ttoc-sum"}, 34.2),
    ("slowfast_4x16_r50", {"lateral": "ttoc-concat"}, 39.8),
    ("slowfast_4x16_r50", {"lateral": "t-sample"}, 34.9),
    ("slowfast_4x16_r50", {"fast_input": "gray"}, 34.1),
    # Time difference of gray frames: one input channel, like gray, which is why the paper's
    # figure sits beside gray's rather than RGB's 36.1.
    ("slowfast_4x16_r50", {"fast_input": "timediff"}, 34.2),
    # Half-size Fast input at beta 1/4 with fusion ratio 1: the laterals hand Slow the same
    # widths as the default model (1 x C/4 = 2 x C/8), so only the Fast input changes.
    ("slowfast_4x16_r50", {"fast_input": "half", "beta": "1/4", "fusion_ratio": 1}, 34.4),
]


@pytest.mark.parametrize("arch, overrides, paper", PAPER_GFLOPS, ids=lambda v: str(v))
def test_gflops_within_3_percent_of_the_paper(arch, overrides, paper):
    assert count_gflops(build_config(arch, **overrides)) == pytest.approx(paper, rel=0.03)


@pytest.mark.parametrize("arch, overrides, gflops", [
    ("slowfast_16x8_r101_nl", {}, 242.0),  # the paper prints 234; PySlowFast's own network counts 242.0
    ("slowfast_8x8_r101", {"temporal_res4": 6}, 106.5),  # the paper's 106
])
def test_gflops_of_the_r101_rows_to_a_tenth(arch, overrides, gflops):
    assert round(count_gflops(build_config(arch, **overrides)), 1) == gflops


def test_gflops_where_the_paper_cannot_be_reached_by_one_convention():
    # Fast-only: the paper lists 6.4, but its own Table 5a prices this same Fast pathway at
    # 34.2 (SlowFast, no laterals) - 27.3 (Slow-only) = 6.9; we count 6.90 (6.4 is 7% below).
    assert count_gflops(build_config("fast_4x16_r50")) == pytest.approx(34.2 - 27.3, rel=0.03)
    # beta = 1/6: the reference's per-layer floor widths (10, 42, 85, 170, 341 Fast channels)
    # give 40.5; rounding every width up gives 41.3, still short of the paper's 41.8. At beta =
    # 1/4, where every width is exact, the paper's 54.5 is also 0.9 above the count (53.6):
    # its beta sweep carries about +1 GFLOP that no rounding convention explains.
    beta_6 = count_gflops(build_config("slowfast_4x16_r50", beta="1/6"))
    assert beta_6 == pytest.approx(41.8, rel=0.035)
    assert beta_6 < count_gflops(build_config("slowfast_4x16_r50", beta="1/5"))


def test_gflops_scale_with_the_view():
    cfg = build_config("slowfast_4x16_r50")
    assert count_gflops(cfg, 224) * (256 / 224) ** 2 == pytest.approx(count_gflops(cfg, 256), rel=0.01)


@pytest.mark.parametrize("overrides, message", [
    ({"beta": "0"}, "beta"),
    ({"alpha": 3}, "divisible"),
    ({"depth": 34}, "depth"),
    ({"lateral": "ttoc-sum", "beta": "1/4"}, "alpha\\*beta = 1"),
    ({"nonlocal_res4": (9,)}, "res4"),
])
def test_invalid_configs_raise_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config("slowfast_4x16_r50", **overrides)


def test_config_round_trips_through_json():
    cfg = build_config("slowfast_16x8_r101_nl", beta="1/6")
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert dataclasses.replace(cfg, num_classes=7).num_classes == 7


def sfcli(*args):
    return subprocess.run([sys.executable, "-m", "sfcli", *args], capture_output=True, text=True, timeout=120)


def test_cli_info_json():
    result = sfcli("info", "--arch", "slowfast_4x16_r50", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["arch"] == "slowfast_4x16_r50" and info["params"] == 34_480_216
    assert info["gflops"] == pytest.approx(36.1, rel=0.01)
    assert (info["slow_frames"], info["fast_frames"], info["crop"]) == (4, 32, 256)


def test_cli_info_overrides_and_table():
    result = sfcli("info", "--arch", "slowfast_tiny", "--beta", "1/8", "--width", "32", "--crop", "64")
    assert result.returncode == 0, result.stderr
    assert "GFLOPs per 64² view" in result.stdout and "1/8" in result.stdout


@pytest.mark.parametrize("args", [
    ["info", "--beta", "0"],
    ["info", "--alpha", "3"],
    ["info", "--arch", "no_such_net"],
    ["info", "--lateral", "sideways"],
    ["info", "--crop", "abc"],
])
def test_cli_bad_overrides_end_in_one_line_and_exit_2(args):
    result = sfcli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("sfcli: error:")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_help_lists_every_command():
    result = sfcli("--help")
    assert result.returncode == 0
    from sfcli.cli import cli
    for name in cli.commands:
        assert name in result.stdout


@pytest.mark.parametrize("overrides", [{}, {"fast_input": "gray"}, {"lateral": "ttoc-concat"}], ids=str)
def test_any_memory_format_in_same_logits_out(overrides):
    """The network runs NDHWC whatever the formats of its weights and clip; each pair gives the
    same logits."""
    torch.manual_seed(0)
    model = create_model("slowfast_tiny", **TINY, **overrides).eval()
    clip = torch.randn(CLIP)
    logits = []
    with torch.no_grad():
        for fmt in (torch.contiguous_format, torch.channels_last_3d):
            for clip_fmt in (torch.contiguous_format, torch.channels_last_3d):
                logits.append(model.to(memory_format=fmt)(clip.contiguous(memory_format=clip_fmt)))
    for other in logits[1:]:
        torch.testing.assert_close(other, logits[0], rtol=1e-5, atol=1e-5)


def test_ndhwc_training_step_gives_the_gradients_of_the_default_layout():
    """NDHWC weights and activations leave the gradients what the same network computes in the
    default memory format (in float64, so that only a mistake, not float32 rounding in another
    summation order, can tell them apart)."""
    torch.manual_seed(0)
    ndhwc = create_model("slowfast_tiny", **TINY, dropout=0.0).double()
    plain = create_model("slowfast_tiny", **TINY, dropout=0.0).double().to(memory_format=torch.contiguous_format)
    plain.load_state_dict(ndhwc.state_dict())
    plain.features = lambda x: plain_features(plain, x)
    clip, labels = torch.randn(CLIP, dtype=torch.float64), torch.tensor([0, 3])
    grads = []
    for model in (ndhwc, plain):
        nn.functional.cross_entropy(model(clip), labels).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert ndhwc.slow.stem[0][0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-9, atol=1e-12, msg=name)


def plain_features(model, clip):
    """SlowFast.features without the conversion to NDHWC."""
    slow, fast = model.slow.stem(clip.index_select(2, model.slow_index)), model.fast.stem(clip)
    for i in range(4):
        slow = model.slow.stages[i](model.laterals[i](slow, fast))
        fast = model.fast.stages[i](fast)
    assert slow.is_contiguous() and fast.is_contiguous()
    return torch.cat([slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))], dim=1)


def test_wide_pathways_run_ndhwc_narrow_ones_ncdhw():
    """NDHWC where a pathway's stem has 8 channels or more (the R50 Fast pathway), NCDHW for
    slowfast_tiny's 2-channel Fast pathway; the weights are stored in the pathway's format."""
    with torch.device("meta"):
        r50, tiny = create_model("slowfast_8x8_r50"), create_model("slowfast_tiny")
    ndhwc, ncdhw = torch.channels_last_3d, torch.contiguous_format
    assert (r50.slow.memory_format, r50.fast.memory_format) == (ndhwc, ndhwc)
    assert (tiny.slow.memory_format, tiny.fast.memory_format) == (ndhwc, ncdhw)
    assert r50.fast.stages[0][0].branch2[0][0].weight.is_contiguous(memory_format=ndhwc)
    assert tiny.laterals[0].conv[0].weight.is_contiguous()



def test_narrow_fast_stems_run_as_frame_taps():
    """The Fast stems of fewer than 8 channels (slowfast_tiny's 2, beta 1/4's 4) run as
    FrameTapsConv3d; the R50 stems and every Slow stem (no temporal extent) as the plain conv."""
    tiny, quarter, r50 = (create_model("slowfast_tiny"), create_model("slowfast_tiny", beta="1/4"),
                          create_model("slowfast_8x8_r50"))
    stems = [type(pathway.stem[0].conv) for pathway in (tiny.fast, quarter.fast, r50.fast, tiny.slow, r50.slow)]
    assert stems == [FrameTapsConv3d, FrameTapsConv3d, nn.Conv3d, nn.Conv3d, nn.Conv3d]


@pytest.mark.parametrize("padding, bias", [((2, 3, 3), False), ((1, 3, 3), True), ((0, 2, 2), True)])
def test_frame_taps_conv_is_the_same_conv(padding, bias):
    """FrameTapsConv3d has the plain conv's outputs, gradients (input and weight), parameters and
    state-dict keys, down to a clip of a single output frame, and returns its input's memory
    format."""
    torch.manual_seed(0)
    args = (3, 2, (5, 7, 7))
    kwargs = {"stride": (1, 2, 2), "padding": padding, "bias": bias}
    plain = nn.Conv3d(*args, **kwargs).double()
    taps = FrameTapsConv3d(*args, **kwargs).double()
    taps.load_state_dict(plain.state_dict())
    fewest = 5 - 2 * padding[0]  # the shortest clip the conv takes: one output frame
    for frames, fmt in ((6, torch.contiguous_format), (6, torch.channels_last_3d), (fewest, torch.contiguous_format)):
        x = torch.randn(2, 3, frames, 13, 13, dtype=torch.float64)
        results = []
        for conv in (plain, taps):
            clip = x.contiguous(memory_format=fmt).requires_grad_()
            y = conv(clip)
            grads = torch.autograd.grad(y.square().sum(), [clip, *conv.parameters()])
            results.append((y.detach(), *grads))
        assert taps(x.contiguous(memory_format=fmt)).is_contiguous(memory_format=fmt)
        torch.testing.assert_close(results[1], results[0], rtol=1e-12, atol=1e-12)
    assert list(taps.state_dict()) == list(plain.state_dict())
    with pytest.raises(ValueError, match="temporal stride 1"):
        FrameTapsConv3d(*args, stride=2)

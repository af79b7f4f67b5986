"""The inference network: folded BN, fused post-ops, and the oneDNN path taken where it should be."""

import logging
import platform

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from sfcli import fused as fused_module
from sfcli.fused import FusedBottleneck, FusedConv3d, fuse_bn, onednn_post_ops
from sfcli.model import Bottleneck, ConvBN
from sfcli.presets import create_model

TINY = dict(num_classes=5)
CLIP = (2, 3, 32, 32, 32)  # slowfast_tiny: alpha 8 x T 4 = 32 Fast-rate frames
ONEDNN_HOST = platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")


@pytest.fixture
def fresh_self_check():
    """The oneDNN self-check runs again in the test, and again after it with the real ops."""
    onednn_post_ops.cache_clear()
    yield
    onednn_post_ops.cache_clear()


def ops_run(fn, *args, **kwargs) -> set[str]:
    """Names of the operators that fn(*args) runs, as torch's profiler records them."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(*args, **kwargs)
    return {event.name for event in prof.events()}


def conv_layer(c_in=8, c_out=16, kernel=(1, 3, 3), stride=(1, 1, 1)):
    torch.manual_seed(0)
    layer = ConvBN(c_in, c_out, kernel, stride).eval()
    layer.bn.running_mean.normal_(0, 0.1)
    layer.bn.running_var.uniform_(0.5, 1.5)
    return layer, torch.randn(2, c_in, 8, 12, 12).contiguous(memory_format=torch.channels_last_3d)


def test_fuse_bn_computes_the_same_function():
    torch.manual_seed(0)
    model = create_model("slowfast_tiny", **TINY, nonlocal_res4=(0,)).eval()
    with torch.no_grad():  # random BN statistics and affines, so that folding them changes the weights
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.weight.uniform_(0.2, 1.0)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    fused = fuse_bn(model)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())  # the original is untouched
    clip = torch.randn(CLIP)
    original = clip.clone()
    with torch.no_grad():  # on the CPU: oneDNN's fused post-ops, residual sums written in place
        expected, got = model(clip), fused(clip)
        again = fused(clip)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-5
    assert torch.equal(clip, original) and torch.equal(again, got)  # in-place sums stay inside the network
    unfused = fused(clip)  # with autograd on: the same ops one by one
    assert ((unfused - expected).norm() / expected.norm()).item() < 1e-5


@pytest.mark.parametrize("width", [32, 31, 30], ids=["even-in-even-out", "odd-in-even-out", "odd-out"])
@pytest.mark.parametrize("memory_format", [torch.channels_last_3d, torch.contiguous_format], ids=["ndhwc", "ncdhw"])
def test_fused_conv_ways_compute_the_same_function(width, memory_format):
    """Each way FusedConv3d runs a conv (column pairs for a narrow conv, 2D over frames, 2D over
    time x space, 3D) gives what conv + BN + ReLU give, in the input's memory format."""
    torch.manual_seed(0)
    for c_in, c_out, kernel, stride in [(3, 8, (5, 7, 7), (1, 2, 2)), (4, 8, (1, 3, 3), (1, 1, 1)),
                                        (8, 16, (1, 3, 3), (1, 2, 2)), (8, 16, (3, 1, 1), (1, 1, 1)),
                                        (8, 16, (5, 1, 1), (4, 1, 1))]:
        layer = ConvBN(c_in, c_out, kernel, stride).eval()
        layer[1].running_mean.normal_(0, 0.1)
        layer[1].running_var.uniform_(0.5, 1.5)
        fused = FusedConv3d(layer[0], layer[1], relu=True)
        x = torch.randn(2, c_in, 8, 12, width).contiguous(memory_format=memory_format)
        with torch.no_grad():
            expected, got = layer(x), fused(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert got.is_contiguous(memory_format=memory_format)


def test_fuse_bn_swaps_in_fused_blocks_by_type():
    model = create_model("slowfast_tiny", **TINY, nonlocal_res4=(0,))
    fused = fuse_bn(model)
    blocks = sum(isinstance(m, Bottleneck) for m in model.modules())
    assert sum(isinstance(m, FusedBottleneck) for m in fused.modules()) == blocks > 0
    assert not any(isinstance(m, (Bottleneck, ConvBN)) for m in fused.modules())
    # every conv of the network, the non-local block's output included, carries its BN
    convs = sum(isinstance(m, ConvBN) for m in model.modules())
    assert sum(isinstance(m, FusedConv3d) for m in fused.modules()) == convs


@pytest.mark.skipif(not ONEDNN_HOST, reason="oneDNN's post-op convolutions are expected on x86 Linux")
def test_onednn_fast_path_is_taken_on_x86_linux_in_float32(fresh_self_check):
    assert torch.backends.mkldnn.is_available() and onednn_post_ops()
    layer, x = conv_layer()
    fused = FusedConv3d(layer.conv, layer.bn, relu=True)
    with torch.no_grad():
        assert "mkldnn::_convolution_pointwise" in ops_run(fused, x)
        network = fuse_bn(create_model("slowfast_tiny", **TINY))
        # the residual blocks' sums: the in-place binary form, whose name ends in "_"
        assert "mkldnn::_convolution_pointwise_" in ops_run(network, torch.randn(CLIP))
        assert "mkldnn::_convolution_pointwise" not in ops_run(fused.double(), x.double())  # float32 only
    assert "mkldnn::_convolution_pointwise" not in ops_run(fused.float(), x)  # not with autograd on


@pytest.mark.parametrize("broken", ["raises", "wrong"])
def test_a_failing_self_check_leaves_the_plain_path(broken, fresh_self_check, monkeypatch, caplog):
    def op(*args):
        if broken == "raises":
            raise RuntimeError("no such kernel")
        return torch.zeros(1)

    monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise", op)
    layer, x = conv_layer()
    fused = FusedConv3d(layer.conv, layer.bn, relu=True)
    with caplog.at_level(logging.DEBUG, logger=fused_module.__name__), torch.no_grad():
        got, expected = fused(x), layer(x)
    assert not onednn_post_ops()
    notes = [r.getMessage() for r in caplog.records if r.name == fused_module.__name__]
    assert len(notes) == 1 and notes[0].startswith("oneDNN post-op convolutions off")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

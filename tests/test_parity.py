"""Parity with the reference implementation, PyTorchVideo 0.1.5: its hub SlowFast R50 and R101
(random weights, random BN statistics and gammas) saved in PyTorchVideo's layout, wrapped as
Lightning-style `{"model_state": {"model." + k: v}}`, and converted to a PySlowFast `.pyth`;
each file loaded by `load_model` without naming the architecture must give the reference's
logits on the same clip."""

import tempfile
import time
import warnings
from pathlib import Path

import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pytorchvideo's import uses the deprecated torch.jit.script
    hub = pytest.importorskip("pytorchvideo.models.hub")

from sfcli import checkpoint as ck  # noqa: E402
from sfcli.layouts import translate  # noqa: E402
from sfcli.model import FAST_TEMPORAL_KERNELS, SLOW_TEMPORAL_KERNELS  # noqa: E402
from sfcli.model_config import STAGE_BLOCKS  # noqa: E402
from sfcli.presets import PRESETS  # noqa: E402

SIZE = 64  # res5 is SIZE/32 = 2 px wide; the hub head's pool is set to match
HUB = {"slowfast_r50": "slowfast_8x8_r50", "slowfast_r101": "slowfast_8x8_r101"}
LAYOUTS = ("pytorchvideo", "pytorchvideo-wrapped", "pyslowfast")


def settings(model) -> dict:
    """What a PyTorchVideo SlowFast computes, read off its modules: the ModelConfig fields it
    corresponds to, and the temporal kernel of conv1 and of each bottleneck's first conv."""
    stems = model.blocks[0].multipathway_blocks
    fusion = model.blocks[0].multipathway_fusion.conv_fast_to_slow
    pools = model.blocks[5].pool
    stages = [model.blocks[i].multipathway_blocks for i in range(1, 5)]
    kernels = []
    for p in range(2):
        kernels.append([stems[p].conv.kernel_size[0]] + [
            tuple(b.branch2.conv_a.kernel_size[0] for b in stage[p].res_blocks) for stage in stages])
    return {
        "frames": pools[0].kernel_size[0],
        "alpha": pools[1].kernel_size[0] // pools[0].kernel_size[0],
        "fusion_stride": fusion.stride[0],
        "fusion_kernel": fusion.kernel_size[0],
        "fusion_ratio": fusion.out_channels // fusion.in_channels,
        "width": stems[0].conv.out_channels,
        "beta": stems[1].conv.out_channels / stems[0].conv.out_channels,
        "blocks": tuple(len(stage[0].res_blocks) for stage in stages),
        "num_classes": model.blocks[6].proj.out_features,
        "kernels": kernels,
    }


def build_reference(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(hub, name)(pretrained=False, **kwargs)


@pytest.mark.parametrize("name", list(HUB))
def test_hub_models_are_the_presets(name):
    """At its own 224 px head, the hub model is exactly the preset: T and alpha from the head's
    pooling windows, alpha again from the fusion stride, the fusion kernel, and every temporal
    kernel of both pathways (Slow: 1 in conv1, res2, res3, 3 in every res4 and res5 block)."""
    with torch.device("meta"):
        got = settings(build_reference(name))
    cfg = PRESETS[HUB[name]].model
    blocks = STAGE_BLOCKS[cfg.depth]
    assert cfg.temporal_res4 is None and cfg.nonlocal_res4 == ()
    expected = {
        "frames": cfg.frames, "alpha": cfg.alpha, "fusion_stride": cfg.alpha, "fusion_kernel": cfg.fusion_kernel,
        "fusion_ratio": cfg.fusion_ratio, "width": cfg.width, "beta": float(cfg.beta), "blocks": blocks,
        "num_classes": cfg.num_classes,
        "kernels": [[k[0]] + [(k[i + 1],) * n for i, n in enumerate(blocks)]
                    for k in (SLOW_TEMPORAL_KERNELS, FAST_TEMPORAL_KERNELS)],
    }
    assert got == expected


@pytest.fixture(scope="module", params=list(HUB))
def reference(request):
    """A hub model with random weights, its logits on one clip, and its weights in three files."""
    name = request.param
    cfg = PRESETS[HUB[name]].model
    torch.manual_seed(0)
    side = SIZE // 32
    model = build_reference(name, head_pool_kernel_sizes=((cfg.frames, side, side), (cfg.fast_frames, side, side)))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.2, 1.0, generator=g)  # not the zero-init of the final BNs
                m.bias.normal_(0, 0.1, generator=g)
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.num_batches_tracked.fill_(11)
    model.eval()
    clip = torch.randn(1, 3, cfg.fast_frames, SIZE, SIZE, generator=g)
    slow = clip.index_select(2, torch.linspace(0, cfg.fast_frames - 1, cfg.frames).floor().long())
    with torch.no_grad():
        logits = model([slow, clip.clone()])  # a fresh list: the hub forward overwrites it
    state = model.state_dict()
    with tempfile.TemporaryDirectory(prefix="sfcli-parity-") as folder:
        files = {
            "pytorchvideo": Path(folder) / f"{name}.pt",
            "pytorchvideo-wrapped": Path(folder) / f"{name}_wrapped.pyth",
            "pyslowfast": Path(folder) / f"{name.upper()}.pyth",
        }
        torch.save(state, files["pytorchvideo"])
        torch.save({"model_state": {"model." + k: v for k, v in state.items()}}, files["pytorchvideo-wrapped"])
        torch.save({"model_state": translate(state, "pytorchvideo", "pyslowfast"), "epoch": 1}, files["pyslowfast"])
        yield {"name": name, "arch": HUB[name], "state": state, "clip": clip, "logits": logits, "files": files}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_logits_match_the_reference(reference, layout):
    started = time.perf_counter()
    model, info = ck.load_model(reference["files"][layout])
    assert info.arch == reference["arch"] and info.config == PRESETS[reference["arch"]].model
    assert info.format == ("pyslowfast" if layout == "pyslowfast" else "pytorchvideo")
    assert info.classes_source == "kinetics400" and len(info.classes) == 400

    # Every tensor arrived, unchanged, where the reference keeps it.
    back = translate(model.state_dict(), "sfcli", "pytorchvideo")
    assert back.keys() == reference["state"].keys()
    assert all(torch.equal(back[k], v) for k, v in reference["state"].items())

    with torch.no_grad():
        ours = model(reference["clip"])
    ref = reference["logits"]
    assert ours.shape == ref.shape == (1, 400) and ref.norm() > 0
    error = ((ours - ref).norm() / ref.norm()).item()
    assert error <= 1e-4, f"{reference['name']} via {layout}: relative error {error:.2e}"
    assert time.perf_counter() - started < 60

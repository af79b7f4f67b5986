"""sfcli's checkpoint format (atomic save, safe load, clear errors) and the import of PySlowFast
and PyTorchVideo layouts."""

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction

import pytest
import torch

from sfcli import checkpoint as ck
from sfcli.errors import CheckpointError
from sfcli.files import load_checkpoint, save_checkpoint
from sfcli.layouts import known, translate, unwrap
from sfcli.model import SlowFast
from sfcli.presets import PRESETS, build_config, clip_config, create_model
from sfcli.weights_config import infer_config, infer_fields, pyslowfast_cfg_hints

CLIP = (1, 3, 32, 32, 32)  # slowfast_tiny: alpha 8 x T 4


def tiny(num_classes=4, **overrides):
    torch.manual_seed(0)
    model = create_model("slowfast_tiny", num_classes=num_classes, **overrides)
    randomise(model)
    return model.eval()


def randomise(model, seed=1):
    """Random BN statistics and gammas, so that zero-initialised BNs hide no mapping error."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.num_batches_tracked.fill_(7)


def logits(model, seed=2):
    clip = torch.randn(CLIP, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(clip)


def one_sentence(message):
    assert "Traceback" not in message and "WeightsUnpickler" not in message and "\n" not in message, message


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this on purpose")


class Custom:
    pass


# ----------------------------------------------------------------------------- atomic save


def test_failed_save_keeps_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.arange(1000.0)})
    with pytest.raises(CheckpointError, match="could not write checkpoint"):
        save_checkpoint(path, {"step": 2, "weights": torch.zeros(1000), "bad": Unpicklable()})
    assert os.listdir(tmp_path) == ["last.pt"]
    loaded = load_checkpoint(path)
    assert loaded["step"] == 1 and torch.equal(loaded["weights"], torch.arange(1000.0))


def test_save_creates_folders_and_normal_permissions(tmp_path):
    path = tmp_path / "a" / "b" / "ckpt.pt"
    save_checkpoint(path, {"x": torch.ones(2)})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(path.parent) == ["ckpt.pt"]


def test_kill_during_saves_leaves_a_whole_checkpoint(tmp_path):
    """SIGKILL a process that rewrites a 16 MB checkpoint in a loop: the file is always whole."""
    path = tmp_path / "ckpt.pt"
    script = textwrap.dedent(f"""
        import sys, torch
        from sfcli.files import save_checkpoint
        step = 0
        while True:
            save_checkpoint({str(path)!r}, {{"step": step, "w": torch.full((4_000_000,), float(step))}})
            if step == 0:
                print("saved", flush=True)
            step += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saved"
        time.sleep(0.7)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    loaded = load_checkpoint(path)
    assert loaded["w"].shape == (4_000_000,) and bool((loaded["w"] == loaded["step"]).all())


# ----------------------------------------------------------------------------- sfcli round trip


def test_sfcli_round_trip_with_training_state(tmp_path):
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    torch.nn.functional.cross_entropy(model(torch.randn(2, *CLIP[1:])), torch.tensor([0, 1])).backward()
    optimizer.step()
    classes = ["a", "b", "c", "d"]
    payload = ck.make_payload(model, classes, "slowfast_tiny", optimizer=optimizer.state_dict(), step=5, epoch=1,
                              rng={"torch": torch.get_rng_state(), "seed": 3})
    path = tmp_path / "run" / "last.pt"
    save_checkpoint(path, payload)

    loaded = load_checkpoint(path)
    assert loaded["format"] == "sfcli" and loaded["version"] == 1 and loaded["arch"] == "slowfast_tiny"
    assert loaded["classes"] == classes and loaded["step"] == 5
    assert torch.equal(loaded["rng"]["torch"], payload["rng"]["torch"])
    assert loaded["optimizer"]["state"][0]["momentum_buffer"].shape == next(model.parameters()).shape
    assert set(loaded["model"]) == set(model.state_dict())
    assert all(torch.equal(loaded["model"][k], v) for k, v in model.state_dict().items())

    restored, info = ck.load_model(path)
    assert not restored.training
    assert info.format == "sfcli" and info.arch == "slowfast_tiny" and info.epoch == 1
    assert info.classes == classes and info.classes_source == "checkpoint"
    assert info.config == model.cfg
    assert json.loads(json.dumps(info.to_json()))["config"] == model.cfg.to_dict()
    assert torch.equal(logits(restored), logits(model))


def test_sfcli_checkpoint_config_wins_and_overrides_apply(tmp_path):
    model = tiny(nonlocal_res4=(0,), lateral="t-sample")
    path = tmp_path / "m.pt"
    save_checkpoint(path, ck.make_payload(model, list("abcd"), "slowfast_tiny"))
    restored, info = ck.load_model(path, frames=8, dropout=0.0)
    assert info.config.frames == 8 and info.config.dropout == 0.0
    assert info.config.lateral == "t-sample" and info.config.nonlocal_res4 == (0,)
    with pytest.raises(CheckpointError, match="holds a slowfast_tiny network, not slowfast_8x8_r50"):
        ck.load_model(path, arch="slowfast_8x8_r50")


# ----------------------------------------------------------------------------- refusing files


@pytest.mark.parametrize("payload,culprit", [
    ({"model": {}, "hook": os.system}, "system"),
    ({"model": {}, "obj": Custom()}, "Custom"),
], ids=["callable", "class"])
def test_checkpoint_carrying_code_is_refused(tmp_path, payload, culprit):
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    one_sentence(message)
    assert str(path) in message and "carries code" in message and "only loads weights" in message
    assert culprit in message
    with pytest.raises(CheckpointError, match="carries code"):
        ck.load_model(path)


def test_plain_pickle_carrying_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"hook": os.system}))
    with pytest.raises(CheckpointError, match="carries code"):
        load_checkpoint(path)


def damaged(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(10_000)}, good)
    data = good.read_bytes()
    cases = {
        "empty.pt": b"",
        "labels.txt": b"class_a\nclass_b\nabseiling\n",
        "truncated.pt": data[: len(data) // 2],
        "plain.pkl": pickle.dumps({"a": 1}),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    return [tmp_path / name for name in cases]


def test_unreadable_files_raise_one_sentence(tmp_path):
    paths = damaged(tmp_path) + [tmp_path / "missing.pt", tmp_path]
    for path in paths:
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        message = str(err.value)
        one_sentence(message)
        assert str(path) in message and "code" not in message, message
    assert "does not exist" in str(pytest.raises(CheckpointError, load_checkpoint, tmp_path / "missing.pt").value)
    assert "empty" in str(pytest.raises(CheckpointError, load_checkpoint, tmp_path / "empty.pt").value)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        ck.load_model(tmp_path / "labels.txt")


def test_non_dict_and_unknown_layouts_are_refused(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        load_checkpoint(tmp_path / "tensor.pt")
    torch.save({"conv1.weight": torch.zeros(3), "fc.bias": torch.zeros(2), "layer1.0.bn1.weight": torch.zeros(2)},
               tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="not a SlowFast checkpoint") as err:
        ck.load_model(tmp_path / "resnet.pt")
    one_sentence(str(err.value))


# ----------------------------------------------------------------------------- weight mismatches


def test_mismatched_weights_are_listed():
    weights = tiny(num_classes=4).state_dict()
    model = create_model("slowfast_tiny", num_classes=5)
    with pytest.raises(CheckpointError) as err:
        ck.load_weights(model, weights, source="four.pt")
    message = str(err.value)
    first, *lists = message.splitlines()
    assert "four.pt" in first and "2 shape mismatches" in first and first.endswith(".")
    assert "fc.weight: checkpoint (4, 576) vs model (5, 576)" in message
    assert "fc.bias: checkpoint (4,) vs model (5,)" in message
    assert len(lists) == 1 and lists[0].startswith("  shape mismatches (2): ")
    assert "missing" not in message and "unexpected" not in message

    weights = dict(weights)
    for k in [k for k in weights if k.startswith("laterals.")]:
        del weights[k]
    weights["head.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        ck.load_weights(create_model("slowfast_tiny", num_classes=4), weights)
    message = str(err.value)
    assert "missing keys (20): laterals.0.conv.0.weight" in message and "and 14 more" in message
    assert "unexpected keys (1): head.extra.weight" in message


def test_missing_bn_counters_are_filled():
    source = tiny()
    weights = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    model = create_model("slowfast_tiny", num_classes=4)
    ck.load_weights(model, weights)
    assert torch.equal(logits(model), logits(source))


# ----------------------------------------------------------------------------- layouts


def layouts(model):
    """The same weights in every layout and wrapper users have."""
    sd = model.state_dict()
    pys = translate(sd, "sfcli", "pyslowfast")
    ptv = translate(sd, "sfcli", "pytorchvideo")
    return {
        "sfcli": (ck.make_payload(model, list("abcd"), "slowfast_tiny"), "sfcli"),
        "sfcli-bare": (dict(sd), "sfcli"),
        "sfcli-module-prefix": ({"module." + k: v for k, v in sd.items()}, "sfcli"),
        "pyslowfast": ({"model_state": pys, "epoch": 3, "optimizer_state": {}, "cfg": "NUM_GPUS: 8\n"}, "pyslowfast"),
        "pyslowfast-bare": (pys, "pyslowfast"),
        "pytorchvideo": (ptv, "pytorchvideo"),
        "pytorchvideo-model-prefix": ({"model." + k: v for k, v in ptv.items()}, "pytorchvideo"),
        "pytorchvideo-model_state": ({"model_state": {"model." + k: v for k, v in ptv.items()}}, "pytorchvideo"),
        "pytorchvideo-lightning": ({"state_dict": {"model." + k: v for k, v in ptv.items()}, "epoch": 2},
                                   "pytorchvideo"),
    }


def test_detect_format_of_every_layout():
    for name, (state, expected) in layouts(tiny()).items():
        assert unwrap(state)[0] == expected, name
    for bad in ({}, {"a": 1}, {"format": "other"}, {"model_state": {"x.weight": torch.zeros(1)}}):
        with pytest.raises(CheckpointError, match="not a SlowFast checkpoint"):
            unwrap(bad)


def test_key_names_follow_the_references():
    sd = tiny().state_dict()
    pys, ptv = translate(sd, "sfcli", "pyslowfast"), translate(sd, "sfcli", "pytorchvideo")
    for key in ("s1.pathway0_stem.conv.weight", "s1.pathway1_stem.bn.running_var", "s1_fuse.conv_f2s.weight",
                "s4_fuse.bn.num_batches_tracked", "s2.pathway0_res0.branch1.weight", "s2.pathway0_res0.branch1_bn.bias",
                "s5.pathway1_res0.branch2.a.weight", "s3.pathway0_res0.branch2.c_bn.running_mean",
                "head.projection.weight", "head.projection.bias"):
        assert key in pys, key
    for key in ("blocks.0.multipathway_blocks.0.conv.weight", "blocks.0.multipathway_blocks.1.norm.running_mean",
                "blocks.0.multipathway_fusion.conv_fast_to_slow.weight", "blocks.3.multipathway_fusion.norm.weight",
                "blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight",
                "blocks.4.multipathway_blocks.1.res_blocks.0.branch2.norm_c.weight", "blocks.6.proj.weight"):
        assert key in ptv, key
    assert len(pys) == len(ptv) == len(sd)


@pytest.mark.parametrize("arch", list(PRESETS))
def test_layouts_round_trip_and_infer_every_preset(arch):
    with torch.device("meta"):
        sd = SlowFast(build_config(arch)).state_dict()
    pys = translate(sd, "sfcli", "pyslowfast")
    assert all(known(k, "pyslowfast") for k in pys)
    assert translate(pys, "pyslowfast", "sfcli").keys() == sd.keys()
    if PRESETS[arch].model.pathway == "slowfast" and not PRESETS[arch].model.nonlocal_res4:
        ptv = translate(sd, "sfcli", "pytorchvideo")
        assert all(known(k, "pytorchvideo") for k in ptv)
        assert translate(ptv, "pytorchvideo", "sfcli").keys() == sd.keys()
        assert translate(ptv, "pytorchvideo", "pyslowfast").keys() == pys.keys()
    if arch.startswith("slow_"):  # Slow-only 4x16 and 8x8 have the same weights: the caller says which
        with pytest.raises(CheckpointError, match="fit slow_4x16_r50 and slow_8x8_r50 alike") as err:
            infer_config(sd)
        one_sentence(str(err.value))
        assert "--arch" in str(err.value)
        model = PRESETS[arch].model
        assert infer_config(sd, frames=model.frames, tau=model.tau) == (arch, model)
        # A PySlowFast cfg's frames and tau name the network by what it is.
        assert infer_config(sd, hints={"alpha": 1, "frames": model.frames, "tau": model.tau}) == (arch, model)
        assert infer_config(sd, arch) == (arch, model)
        return
    inferred, config = infer_config(sd)
    assert inferred == arch
    assert config == PRESETS[inferred].model


def test_nonlocal_blocks_map_to_pyslowfast_names():
    with torch.device("meta"):
        sd = SlowFast(build_config("slowfast_16x8_r101_nl")).state_dict()
    pys = translate(sd, "sfcli", "pyslowfast")
    for j in (6, 13, 20):
        for part in ("conv_theta.weight", "conv_phi.bias", "conv_g.weight", "conv_out.bias", "bn.running_var"):
            assert f"s4.pathway0_nonlocal{j}.{part}" in pys
    assert "s4.pathway0_res22.branch2.c.weight" in pys
    assert not any(".norm." in k for k in pys)  # PySlowFast's NonLocal calls its BN `bn`: it loads strictly
    old_names = {k.replace(".bn.", ".norm.") if "nonlocal" in k else k: v for k, v in pys.items()}
    assert translate(old_names, "pyslowfast", "sfcli").keys() == sd.keys()
    with pytest.raises(CheckpointError, match="no non-local blocks"):
        translate(sd, "sfcli", "pytorchvideo")


# The names of PySlowFast's Caffe2 model zoo (slowfast/utils/c2_model_loading.py) and the
# PySlowFast names its converter gives them.
CAFFE2_NAMES = {
    "conv1_w": "s1.pathway0_stem.conv.weight", "res_conv1_bn_s": "s1.pathway0_stem.bn.weight",
    "t_res_conv1_bn_riv": "s1.pathway1_stem.bn.running_var", "res4_2_branch2a_w": "s4.pathway0_res2.branch2.a.weight",
    "res4_2_branch2a_bn_riv": "s4.pathway0_res2.branch2.a_bn.running_var",
    "t_res4_2_branch2a_w": "s4.pathway1_res2.branch2.a.weight",
    "res2_0_branch1_bn_b": "s2.pathway0_res0.branch1_bn.bias",
    "t_pool1_subsample_w": "s1_fuse.conv_f2s.weight", "t_pool1_subsample_bn_rm": "s1_fuse.bn.running_mean",
    "t_res3_3_branch2c_bn_subsample_w": "s3_fuse.conv_f2s.weight",
    "t_res3_3_branch2c_bn_subsample_bn_rm": "s3_fuse.bn.running_mean",
    "t_res4_22_branch2c_bn_subsample_bn_s": "s4_fuse.bn.weight", "nonlocal_conv4_6_theta_w":
    "s4.pathway0_nonlocal6.conv_theta.weight", "nonlocal_conv4_13_out_b": "s4.pathway0_nonlocal13.conv_out.bias",
    "nonlocal_conv4_20_bn_riv": "s4.pathway0_nonlocal20.bn.running_var", "pred_w": "head.projection.weight",
}


def test_caffe2_names_follow_the_model_zoo():
    with torch.device("meta"):
        sd = SlowFast(build_config("slowfast_16x8_r101_nl")).state_dict()
    c2 = translate(sd, "sfcli", "caffe2")
    assert len(c2) == sum(not k.endswith("num_batches_tracked") for k in sd)  # Caffe2 keeps no BN counter
    assert all(known(k, "caffe2") for k in c2)
    pys = translate(c2, "caffe2", "pyslowfast")
    for c2_name, pys_name in CAFFE2_NAMES.items():
        assert c2_name in c2 and pys[pys_name] is c2[c2_name], c2_name
    assert translate(c2, "caffe2", "sfcli").keys() == {k for k in sd if not k.endswith("num_batches_tracked")}


def test_caffe2_named_weights_give_the_same_logits(tmp_path):
    model = tiny()
    path = tmp_path / "caffe2_names.pt"
    torch.save(translate(model.state_dict(), "sfcli", "caffe2"), path)
    restored, info = ck.load_model(path)
    assert info.format == "caffe2" and info.arch == "slowfast_tiny" and info.config == model.cfg
    assert torch.equal(logits(restored), logits(model))


# ----------------------------------------------------------------------------- foreign files


@pytest.mark.parametrize("name", ["sfcli-bare", "pyslowfast", "pyslowfast-bare", "pytorchvideo",
                                  "pytorchvideo-model_state", "pytorchvideo-lightning"])
def test_load_model_reads_every_layout(tmp_path, name):
    model = tiny()
    state, fmt = layouts(model)[name]
    path = tmp_path / "weights.pyth"
    torch.save(state, path)
    restored, info = ck.load_model(path)
    assert info.format == fmt and info.arch == "slowfast_tiny" and info.config == model.cfg
    assert info.classes == [f"class_{i}" for i in range(4)] and info.classes_source == "generic"
    assert torch.equal(logits(restored), logits(model))


def test_foreign_file_with_a_preset_that_does_not_fit(tmp_path):
    path = tmp_path / "w.pyth"
    torch.save({"model_state": translate(tiny().state_dict(), "sfcli", "pyslowfast")}, path)
    with pytest.raises(CheckpointError) as err:
        ck.load_model(path, arch="slowfast_8x8_r50")
    message = str(err.value)
    one_sentence(message)
    assert str(path) in message and "depth 14 (preset: 50)" in message and "width 16 (preset: 64)" in message
    # An explicit preset that fits: its frames, the weights' classes.
    _, info = ck.load_model(path, arch="slowfast_tiny", frames=2)
    assert info.config.frames == 2 and info.config.num_classes == 4


def test_pyslowfast_cfg_sets_frames_and_alpha(tmp_path):
    cfg = "DATA:\n  NUM_FRAMES: 64\n  SAMPLING_RATE: 2\n  TRAIN_CROP_SIZE: 224\nMODEL:\n  ARCH: slowfast\n" \
          "  NUM_CLASSES: 4\nSLOWFAST:\n  ALPHA: 8\n  BETA_INV: 4\n"
    assert pyslowfast_cfg_hints(cfg) == {"alpha": 8, "frames": 8, "tau": 16}
    assert pyslowfast_cfg_hints("DATA:\n  NUM_FRAMES: 8\n  SAMPLING_RATE: 8\nMODEL:\n  ARCH: slow\n") == \
        {"alpha": 1, "frames": 8, "tau": 8}
    assert pyslowfast_cfg_hints("garbage") == {} and pyslowfast_cfg_hints(None) == {}
    # As cfg.dump() writes it: MIXUP.ALPHA comes first, nested mappings and lists in between.
    dumped = "DATA:\n  MEAN:\n  - 0.45\n  NUM_FRAMES: 16\n  SAMPLING_RATE: 4\nMIXUP:\n  ALPHA: 0.8\nMODEL:\n" \
             "  ARCH: 'slow'\n  MULTI_PATHWAY_ARCH:\n  - slowfast\nMVIT:\n  REV:\n    ENABLE: false\n" \
             "  DEPTH: 16\nSLOWFAST:\n  ALPHA: 4\n"
    assert pyslowfast_cfg_hints(dumped) == {"alpha": 1, "frames": 16, "tau": 4}
    assert pyslowfast_cfg_hints(dumped.replace("'slow'", "slowfast")) == {"alpha": 4, "frames": 4, "tau": 16}
    path = tmp_path / "w.pyth"
    torch.save({"model_state": translate(tiny().state_dict(), "sfcli", "pyslowfast"), "epoch": 9, "cfg": cfg}, path)
    _, info = ck.load_model(path)
    assert (info.config.alpha, info.config.frames, info.config.tau) == (8, 8, 16)
    assert info.epoch == 9


def test_infer_fields_of_variants():
    with torch.device("meta"):
        def fields(**overrides):
            return infer_fields(SlowFast(build_config("slowfast_tiny", **overrides)).state_dict())

        assert fields(lateral="t-sample")["lateral"] == "t-sample"
        assert fields(lateral="ttoc-concat")["alpha"] == 8
        assert fields(lateral="none")["lateral"] == ("none", "ttoc-sum")
        assert fields(fast_input="gray")["fast_input"] == ("gray", "timediff")
        assert fields(temporal_res4=0)["temporal_res4"] == 0
        assert fields(depth=26, nonlocal_res4=(0, 1))["nonlocal_res4"] == (0, 1)
        f = fields(fusion_kernel=5, fusion_ratio=1, beta="1/8", width=32)
        assert (f["fusion_kernel"], f["fusion_ratio"], f["beta"], f["width"]) == (5, 1, Fraction(1, 8), 32)
        r101 = SlowFast(build_config("slowfast_8x8_r101", beta="1/6")).state_dict()
        assert infer_config(r101)[1].beta == Fraction(1, 6)


# ----------------------------------------------------------------------------- convert


@pytest.mark.parametrize("num_classes", [400, 4])
def test_convert_writes_an_sfcli_checkpoint(tmp_path, num_classes):
    model = tiny(num_classes=num_classes)
    src = tmp_path / "SLOWFAST.pyth"
    torch.save({"model_state": translate(model.state_dict(), "sfcli", "pyslowfast"), "epoch": 1}, src)
    summary = ck.convert(src, tmp_path / "out" / "model.pt")
    assert summary.format == "pyslowfast" and summary.arch == "slowfast_tiny"
    assert summary.num_classes == num_classes and summary.tensors == len(model.state_dict())
    saved = load_checkpoint(tmp_path / "out" / "model.pt")
    assert saved["format"] == "sfcli" and saved["converted_from"]["format"] == "pyslowfast"
    if num_classes == 400:
        assert summary.classes_source == "kinetics400"
        assert saved["classes"][:3] == ["abseiling", "air drumming", "answering questions"]
        assert len(saved["classes"]) == 400
    else:
        assert saved["classes"] == ["class_0", "class_1", "class_2", "class_3"]
    restored, info = ck.load_model(tmp_path / "out" / "model.pt")
    assert info.format == "sfcli" and info.classes == saved["classes"]
    assert torch.equal(logits(restored), logits(model))


def test_convert_with_given_classes(tmp_path):
    src = tmp_path / "w.pt"
    torch.save(translate(tiny().state_dict(), "sfcli", "pytorchvideo"), src)
    summary = ck.convert(src, tmp_path / "c.pt", classes=["w", "x", "y", "z"])
    assert summary.classes_source == "given" and load_checkpoint(tmp_path / "c.pt")["classes"][0] == "w"
    with pytest.raises(CheckpointError, match="3 class names given for a network with 4 outputs"):
        ck.convert(src, tmp_path / "d.pt", classes=["x", "y", "z"])
    assert not (tmp_path / "d.pt").exists()


def test_a_network_of_no_preset_is_not_named_after_one(tmp_path):
    """PySlowFast's SLOWFAST_NLN_8x8_R50 with non-local blocks in res4 only: 8x8 frames and tau,
    fusion kernel 5 and non-local blocks, which no preset is (slowfast_8x8_r50 fuses over 7)."""
    cfg = build_config("slowfast_8x8_r50", fusion_kernel=5, nonlocal_res4=(1, 3, 5))
    with torch.device("meta"):
        sd = SlowFast(cfg).state_dict()
    hints = {"alpha": 4, "frames": 8, "tau": 8}
    assert infer_config(sd, hints=hints) == ("custom", cfg)
    assert clip_config(cfg, "custom") == clip_config(cfg, "slowfast_8x8_r50")  # the paper's pipeline alike
    tiny_like = build_config("slowfast_tiny", beta=Fraction(1, 4))  # the small preset's pipeline is kept
    with torch.device("meta"):
        assert infer_config(SlowFast(tiny_like).state_dict())[0] == "slowfast_tiny"

"""Fine-tuning: `sfcli train --init` from every kind of weights, the new classifier, frozen stages
and batch norm, the classifier's rate, and a run that resumes without reading its weights again."""

import json
import shutil
import signal

import pytest
import torch
from conftest import one_line_error, sfcli
from test_caffe2 import caffe2_blobs, write_caffe2
from test_train import start, wait_for_checkpoint, weights

from sfcli.checkpoint import save_model
from sfcli.errors import CheckpointError, TrainingError
from sfcli.finetune import FineTuning, prepare_init
from sfcli.hub import sha256_of
from sfcli.layouts import translate
from sfcli.presets import create_model
from sfcli.recipe import TrainConfig

TRAIN = ["--crop", "32", "--batch-size", "4", "--workers", "0", "--views", "1x1"]
SOURCE_CLASSES = 7  # the weights' classifier; the data has 4 classes


def source_model():
    torch.manual_seed(3)
    model = create_model("slowfast_tiny", num_classes=SOURCE_CLASSES, width=8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The same weights in each of the five kinds `--init` reads."""
    folder = tmp_path_factory.mktemp("weights")
    model = source_model()
    sd = model.state_dict()
    save_model(model, folder / "sfcli.pt", [f"c{i}" for i in range(SOURCE_CLASSES)], "slowfast_tiny")
    (folder / "run").mkdir()
    shutil.copy(folder / "sfcli.pt", folder / "run" / "checkpoint.pt")
    torch.save({"model_state": translate(sd, "sfcli", "pyslowfast")}, folder / "model.pyth")
    torch.save(translate(sd, "sfcli", "pytorchvideo"), folder / "ptv.pt")
    write_caffe2(folder / "MODEL.pkl", caffe2_blobs(model))
    kinds = {"sfcli": "sfcli.pt", "run": "run", "pyslowfast": "model.pyth", "pytorchvideo": "ptv.pt",
             "caffe2": "MODEL.pkl"}
    return model, {kind: folder / name for kind, name in kinds.items()}


@pytest.mark.parametrize("kind", ["sfcli", "run", "pyslowfast", "pytorchvideo", "caffe2"])
def test_init_loads_every_tensor_but_the_replaced_classifier(sources, kind, tmp_path):
    model, paths = sources
    tuning = prepare_init(paths[kind], tmp_path / "run", 4)
    assert tuning.arch == "slowfast_tiny" and tuning.config.width == 8 and tuning.config.num_classes == 4
    assert tuning.source.head == f"replaced: {SOURCE_CLASSES} -> 4 classes"
    target = create_model("slowfast_tiny", num_classes=4, width=8)
    fresh_fc = target.fc.weight.clone()
    tuning.prepare(target)
    got, want = target.state_dict(), model.state_dict()
    assert torch.equal(got["fc.weight"], fresh_fc) and got["fc.weight"].shape == (4, fresh_fc.shape[1])
    assert all(torch.equal(got[k], want[k]) for k in want if not k.startswith("fc.") and "num_batches" not in k)


def test_a_classifier_that_fits_is_kept(sources, tmp_path):
    names = [f"c{i}" for i in range(SOURCE_CLASSES)]
    for path, classes in ((sources[1]["sfcli"], names), (sources[1]["sfcli"], None), (sources[1]["caffe2"], names)):
        tuning = prepare_init(path, tmp_path / "run", SOURCE_CLASSES, classes=classes)
        assert tuning.source.head == "kept" and torch.equal(tuning.weights["fc.weight"], sources[0].fc.weight)


def test_a_classifier_of_other_class_names_is_replaced(sources, tmp_path):
    """As many outputs as the data has classes, but not the data's: a classifier that would start
    out confidently wrong."""
    others = [f"new{i}" for i in range(SOURCE_CLASSES)]
    tuning = prepare_init(sources[1]["sfcli"], tmp_path / "run", SOURCE_CLASSES, classes=others)
    assert tuning.source.head == f"replaced: {SOURCE_CLASSES} classes of other names"
    assert "fc.weight" not in tuning.weights
    target = create_model("slowfast_tiny", num_classes=SOURCE_CLASSES, width=8)
    fresh = target.fc.weight.clone()
    tuning.prepare(target)
    assert torch.equal(target.fc.weight, fresh)


def test_a_missing_tensor_is_one_error_that_names_it(sources, tmp_path):
    sd = sources[0].state_dict()
    del sd["slow.stages.1.0.branch2.1.1.running_mean"]
    torch.save(sd, tmp_path / "broken.pt")
    tuning = prepare_init(tmp_path / "broken.pt", tmp_path / "run", 4)
    with pytest.raises(CheckpointError, match=r"missing key.*slow\.stages\.1\.0\.branch2\.1\.1\.running_mean"):
        tuning.prepare(create_model("slowfast_tiny", num_classes=4, width=8))


def test_options_that_contradict_the_weights_are_one_error(sources, synth, tmp_path):
    line = one_line_error(sfcli("train", "--init", str(sources[1]["pyslowfast"]), "--data", str(synth / "train.csv"),
                                *TRAIN, "--width", "16", "--depth", "14", "--out", str(tmp_path / "run")))
    assert "--width 16 (the weights: 8)" in line and "--depth" not in line
    line = one_line_error(sfcli("train", "--init", str(sources[1]["pyslowfast"]), "--data", str(synth / "train.csv"),
                                *TRAIN, "--arch", "slow_8x8_r50", "--out", str(tmp_path / "run")))
    assert "slow_8x8_r50" in line


@pytest.mark.parametrize("stage, trainable", [
    ("stem", ("slow.stages.", "fast.stages.", "laterals.1.", "laterals.2.", "laterals.3.", "fc.")),
    ("res4", ("slow.stages.3.", "fast.stages.3.", "fc.")),
    ("res5", ("fc.",)),  # a linear probe
])
def test_freeze_leaves_only_the_later_stages_trainable(stage, trainable):
    model = create_model("slowfast_tiny", num_classes=4, width=8)
    FineTuning(None, None, None, freeze=stage).prepare(model)
    for name, p in model.named_parameters():
        assert p.requires_grad == name.startswith(trainable), name


def test_the_classifier_has_its_own_rate():
    model = create_model("slowfast_tiny", num_classes=4, width=8)
    tuning = FineTuning(None, None, None, freeze="res3", head_lr_mult=10.0)
    tuning.prepare(model)
    optimizer = tuning.make_optimizer(model, TrainConfig())
    head = {id(p) for p in model.fc.parameters()}
    for group in optimizer.param_groups:
        assert group["lr_mult"] == (10.0 if id(group["params"][0]) in head else 1.0)
        assert all(p.requires_grad for p in group["params"])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(p.requires_grad for p in model.parameters())


# ----------------------------------------------------------------------------- fine-tuning runs


def tune_args(source, synth):
    return ["train", "--init", str(source), "--data", str(synth / "train.csv"), *TRAIN, "--epochs", "2",
            "--checkpoint-every", "1", "--freeze", "res3", "--freeze-bn", "--head-lr-mult", "10"]


@pytest.fixture(scope="module")
def tuned(sources, synth, tmp_path_factory):
    """A 2-epoch fine-tuning run from a copy of the Caffe2 file, res3 and batch norm frozen."""
    folder = tmp_path_factory.mktemp("tuned")
    source = shutil.copy(sources[1]["caffe2"], folder / "MODEL.pkl")
    result = sfcli(*tune_args(source, synth), "--out", str(folder / "run"))
    assert result.returncode == 0, result.stderr
    return folder / "run", source, result


def test_a_fine_tuning_run_says_and_records_where_it_started(tuned):
    run, source, result = tuned
    assert "classifier fc replaced: 7 -> 4 classes" in result.stderr
    assert "base lr 0.000625, warm-up 0.2 epochs" in result.stderr  # the --init defaults at batch 4
    config = json.loads((run / "config.json").read_text())
    init = config["finetune"]["init"]
    assert init["path"] == str(source) and init["sha256"] == sha256_of(source) and init["format"] == "caffe2"
    assert config["finetune"]["freeze"] == "res3" and config["finetune"]["freeze_bn"] is True
    assert config["train"]["lr"] == 0.01 * 4 / 64 and config["train"]["warmup_epochs"] == 0.2


def test_frozen_tensors_and_batch_norm_statistics_do_not_move(tuned, sources):
    run, _, _ = tuned
    after, before = weights(run), sources[0].state_dict()
    frozen = ("slow.stem.", "fast.stem.", "slow.stages.0.", "slow.stages.1.", "fast.stages.0.", "fast.stages.1.",
              "laterals.0.", "laterals.1.", "laterals.2.")
    for k, v in after.items():
        if k.startswith(frozen) or "running_" in k:
            assert torch.equal(v, before[k]), k
    assert not torch.equal(after["slow.stages.2.0.branch2.0.0.weight"], before["slow.stages.2.0.branch2.0.0.weight"])
    bn_weight = "slow.stages.3.0.branch2.0.1.weight"  # --freeze-bn: affine frozen in trained stages too
    assert torch.equal(after[bn_weight], before[bn_weight])


def test_a_killed_fine_tuning_run_resumes_bit_exact(tuned, synth, tmp_path):
    whole, source, _ = tuned
    run = tmp_path / "killed"
    process = start(*tune_args(source, synth), "--out", str(run))
    state = wait_for_checkpoint(run, process, at_least_steps=2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state["epoch"] * 4 + state["step"] < 8
    resumed = sfcli(*tune_args(source, synth), "--out", str(run))
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(whole), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_reads_no_weights_and_a_changed_file_is_refused(tuned, synth):
    run, source, _ = tuned
    original = source.read_bytes()
    source.unlink()  # the run's checkpoint has every tensor: the same command needs no file
    again = sfcli(*tune_args(source, synth), "--out", str(run))
    assert again.returncode == 0, again.stderr
    try:
        source.write_bytes(original[:-8] + bytes(8))
        line = one_line_error(sfcli(*tune_args(source, synth), "--out", str(run)))
        assert "changed since this run started" in line and "--out" in line
    finally:
        source.write_bytes(original)


def test_freezing_without_init_trains_from_scratch_with_the_controls(synth, tmp_path):
    run = tmp_path / "probe"
    result = sfcli("train", "--arch", "slowfast_tiny", "--width", "8", "--data", str(synth / "train.csv"), *TRAIN,
                   "--epochs", "1", "--batch-size", "8", "--freeze", "res5", "--out", str(run))
    assert result.returncode == 0, result.stderr
    assert "frozen up to res5" in result.stderr
    with pytest.raises(TrainingError, match="contradict"):
        prepare_init(run, tmp_path / "other", 4, explicit={"depth": 50})

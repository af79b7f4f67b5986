"""PySlowFast's Caffe2 pickles: read like the .pyth of the same weights, through an unpickler that
builds numpy arrays only."""

import os
import pickle
import struct

import numpy as np
import pytest
import torch
from conftest import one_line_error, sfcli

from sfcli import checkpoint as ck
from sfcli.caffe2 import load_caffe2
from sfcli.errors import CheckpointError
from sfcli.layouts import translate
from sfcli.presets import create_model

CLIP = (1, 3, 32, 32, 32)


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote Caffe2's files: byte strings as STRING opcodes (read
    back as text with encoding latin1) and numpy under its Python 2 module names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        module = "numpy.core.multiarray" if obj.__name__ == "_reconstruct" else "numpy"
        self.write(pickle.GLOBAL + f"{module}\n{obj.__name__}\n".encode())
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[type] = save_global


def write_caffe2(path, blobs: dict):
    with open(path, "wb") as f:
        Python2Pickler(f, protocol=2).dump({"blobs": {name.encode(): blob for name, blob in blobs.items()}})
    return path


def caffe2_blobs(model):
    """The model's weights as the zoo's files hold them: numpy arrays under Caffe2 names, the
    classifier as a 1x1x1 conv, 1x1x1 kernels without their trailing dimensions, and the
    optimizer's blobs beside them."""
    blobs = {k: v.numpy() for k, v in translate(model.state_dict(), "sfcli", "caffe2").items()}
    blobs["pred_w"] = blobs["pred_w"].reshape(*blobs["pred_w"].shape, 1, 1, 1)
    squeezed = [k for k, v in blobs.items() if v.ndim == 5 and v.shape[2:] == (1, 1, 1) and k != "pred_w"]
    for k in squeezed:
        blobs[k] = blobs[k].reshape(blobs[k].shape[:2])
    assert squeezed
    momentum = {f"{k}_momentum": np.zeros_like(v) for k, v in list(blobs.items())[:5]}
    return {**blobs, **momentum, "lr": np.array([0.1], dtype=np.float32), "model_iter": np.array([196], dtype=np.int64)}


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("slowfast_tiny", num_classes=4, width=8).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5), m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
    folder = tmp_path_factory.mktemp("caffe2")
    pyth = folder / "tiny.pyth"
    torch.save({"model_state": translate(model.state_dict(), "sfcli", "pyslowfast")}, pyth)
    return model, pyth, write_caffe2(folder / "TINY.pkl", caffe2_blobs(model))


def logits(model):
    with torch.no_grad():
        return model.eval()(torch.randn(CLIP, generator=torch.Generator().manual_seed(2)))


def test_a_caffe2_pickle_gives_the_logits_of_the_pyth_of_the_same_weights(tiny_files):
    model, pyth, pkl = tiny_files
    assert pkl.read_bytes().startswith(b"\x80\x02}") and b"numpy.core.multiarray" in pkl.read_bytes()
    from_pkl, info = ck.load_model(pkl)
    from_pyth, _ = ck.load_model(pyth)
    assert info.format == "caffe2" and info.config == from_pyth.cfg
    assert torch.equal(logits(from_pkl), logits(from_pyth))
    assert torch.equal(logits(from_pkl), logits(model))


def test_optimizer_blobs_are_not_weights(tiny_files):
    blobs = load_caffe2(tiny_files[2])
    assert "lr" not in blobs and "model_iter" not in blobs and not any(k.endswith("_momentum") for k in blobs)
    assert all(isinstance(v, torch.Tensor) for v in blobs.values())


def test_convert_reads_a_caffe2_pickle(tiny_files, tmp_path):
    result = sfcli("convert", str(tiny_files[2]), str(tmp_path / "tiny.pt"), "--json")
    assert result.returncode == 0, result.stderr
    model, _ = ck.load_model(tmp_path / "tiny.pt")
    assert torch.equal(logits(model), logits(tiny_files[0]))


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["system", "object-array"])
def test_a_caffe2_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "ran"
    path = tmp_path / "EVIL.pkl"
    blob = RunsCode(marker) if payload == "system" else np.array([RunsCode(marker)], dtype=object)
    path.write_bytes(pickle.dumps({"blobs": {"conv1_w": blob}}, protocol=2))
    with pytest.raises(CheckpointError, match="refused because it carries code"):
        ck.load_model(path)
    line = one_line_error(sfcli("infer", str(tmp_path / "any.mp4"), "--weights", str(path)))
    assert "refused" in line
    assert not marker.exists()


def test_a_pickle_of_no_arrays_is_one_sentence(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(CheckpointError, match="without Caffe2 blobs"):
        ck.load_model(path)

"""PySlowFast's Caffe2 model-zoo files (`SLOWFAST_8x8_R50.pkl`, ...): Python 2 pickles of a dict
whose "blobs" map Caffe2 names to numpy arrays, read by an unpickler that builds numpy arrays and
plain containers and nothing else, so a file that would import or call other code is refused
before any of it runs."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from sfcli.errors import CheckpointError

# Blobs of Caffe2's optimizer, not weights: momentum buffers, the learning rate, the iteration.
NOT_WEIGHTS = ("lr", "model_iter")
_numpy_reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own, wherever numpy keeps it


class _Refused(Exception):
    """What made the unpickler stop: the name of the global the file asked for."""


def _reconstruct(cls, shape, dtype):
    if cls is not np.ndarray:
        raise _Refused(f"an ndarray subclass {getattr(cls, '__name__', cls)}")
    return _numpy_reconstruct(cls, shape, dtype)


def _dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.hasobject:
        raise _Refused("numpy object arrays")
    return dtype


# The only globals a numpy array's pickle names, under numpy 1 (as Python 2 wrote them) and numpy 2.
_GLOBALS = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _dtype}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        raise _Refused("a persistent reference")


def is_caffe2(path) -> bool:
    """Whether `path` looks like a Caffe2 pickle rather than a torch file: named .pkl, or a bare
    protocol-2 pickle of a dict (torch's legacy files start with a magic number instead)."""
    path = Path(path)
    if path.suffix == ".pkl":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(3)
    except OSError:
        return False
    return head == b"\x80\x02}" and not zipfile.is_zipfile(path)


def load_caffe2(path) -> dict[str, torch.Tensor]:
    """The weights of a Caffe2 pickle as {Caffe2 name: tensor}, optimizer blobs left out; every
    way this fails is a CheckpointError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _ArraysOnly(f, encoding="latin1").load()
    except _Refused as err:
        raise CheckpointError(f"checkpoint {path} was refused because it carries code ({err}), "
                              f"and sfcli only loads weights") from None
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err})") from None
    except Exception:
        raise CheckpointError(f"{path} is not a Caffe2 pickle, or it is truncated or damaged") from None
    blobs = data.get("blobs", data) if isinstance(data, Mapping) else None
    if not isinstance(blobs, Mapping):
        raise CheckpointError(f"checkpoint {path} is a pickle without Caffe2 blobs (no 'blobs' dict of arrays)")
    weights = {}
    for name, blob in blobs.items():
        if not isinstance(name, str) or name in NOT_WEIGHTS or name.endswith("_momentum"):
            continue
        if not isinstance(blob, np.ndarray) or blob.dtype.kind not in "fiub":
            raise CheckpointError(f"checkpoint {path}: blob {name} is a {type(blob).__name__}, not an array of numbers")
        weights[name] = torch.from_numpy(np.array(blob))  # a copy: the pickle's buffer is read-only
    return weights


def fit_caffe2_shapes(state_dict: Mapping) -> dict:
    """An sfcli-layout state dict read from Caffe2 with each weight in PyTorch's shape: Caffe2
    may keep a conv's kernel with fewer dimensions (trailing 1s dropped) and the classifier as a
    1x1x1 conv, where sfcli has 5-d conv kernels and a 2-d linear weight."""
    out = {}
    for key, value in state_dict.items():
        if key == "fc.weight" and value.ndim > 2:
            value = value.reshape(value.shape[0], -1)
        elif key.endswith(".weight") and key != "fc.weight" and 1 < value.ndim < 5:
            value = value.reshape(*value.shape, *(1,) * (5 - value.ndim))
        out[key] = value
    return out

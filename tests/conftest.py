"""Shared test fixtures: real video files written with PyAV and read back by the real decoders."""

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

torch.set_num_threads(2)


def write_video(path, num_frames=48, fps=30, size=(64, 80), codec="libx264"):
    """An H.264 mp4 whose frame i is a flat colour encoding i (red: i mod 28, green: i // 28, in
    steps of 8), so the decoded pixels tell which frame a loader picked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0"} if codec == "libx264" else {}
        for i in range(num_frames):
            image = np.zeros((*size, 3), dtype=np.uint8)
            image[..., :2] = frame_levels(i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_levels(i):
    return 16 + 8 * (i % 28), 16 + 8 * (i // 28)


def frame_number(pixels):
    """Invert frame_levels for one decoded (H, W, 3) or (3, H, W) frame."""
    channels = pixels.float().reshape(-1, 3).mean(0) if pixels.shape[-1] == 3 else pixels.float().flatten(1).mean(1)
    red, green = (round((float(v) - 16) / 8) for v in channels[:2])
    return red + 28 * green


def write_truncated(path, source):
    data = Path(source).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return Path(path)


@pytest.fixture
def video_factory(tmp_path):
    def make(name, **kw):
        return write_video(tmp_path / name, **kw)

    return make


def sfcli(*args, env=None, launcher=(sys.executable, "-m", "sfcli"), **kw):
    """Run the real command line in a fresh process, one thread per process as on a busy host."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([*launcher, *args], capture_output=True, text=True, env=env, timeout=600, **kw)


def one_line_error(result):
    """The one sentence a user error ends in (after any progress lines): non-zero exit, no
    traceback, no warning."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("sfcli: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """4 classes, 4 train + 2 val videos each, 48x48, 40 frames: real H.264 files."""
    from sfcli.synth import write_dataset

    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, classes=4, train_per_class=4, val_per_class=2, size=(48, 48), frames=40)
    return root


@pytest.fixture(scope="session")
def corpus(synth, tmp_path_factory):
    """For the bad-input tests (tests/badinputs.py): a finished tiny run, one good video, and a
    folder for the bad files."""
    from badinputs import TINY

    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    result = sfcli("train", "--data", str(synth), *TINY, "--out", str(run))
    assert result.returncode == 0, result.stderr
    video = sorted((synth / "val").rglob("*.mp4"))[0]
    return {"root": root, "run": run, "video": video, "synth": synth}

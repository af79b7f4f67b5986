"""Shared test fixtures: real video files written with PyAV and read back by the real decoders."""

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

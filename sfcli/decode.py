"""Decoding: the frames a caller picks from one video, with decord where it is installed and reads
the file, else PyAV; and the probe of a video's length and rate."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import struct
import sys
from pathlib import Path

import numpy as np
import torch

from sfcli.errors import Interrupted, VideoError
from sfcli.transforms import REFERENCE_FPS
from sfcli.videolist import VIDEO_EXTENSIONS

try:  # decord has no wheels for some platforms; PyAV is the fallback
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own messages; ours say it in one line
except ImportError:  # pragma: no cover - depends on the platform
    decord = None


@contextlib.contextmanager
def _native_stderr_silenced():
    """decord's C++ layer prints its own error for a file it cannot open before raising; the
    raised error is reported instead, in one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# Frames decord hands over at a time: at 4K, 8 frames are 200 MB before they are resized.
DECORD_CHUNK = 8


def resized(frames: np.ndarray, resize) -> torch.Tensor:
    """(N, H, W, 3) uint8 frames, through resize ((N, C, H, W) -> (N, C, h, w)) where given."""
    frames = torch.from_numpy(np.ascontiguousarray(frames))
    return frames if resize is None else resize(frames.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def in_order(frames: torch.Tensor, wanted: list[int], indices: list[int]) -> torch.Tensor:
    """The frames of `indices` (repeats included) from `frames`, which holds each of `wanted` once."""
    position = {frame: i for i, frame in enumerate(wanted)}
    return frames[[position[i] for i in indices]]


def with_stand_ins(frames: torch.Tensor, decoded: list[int], indices: list[int]) -> torch.Tensor:
    """in_order, the last decoded frame standing in for each index that did not decode."""
    present = set(decoded)
    return in_order(frames, decoded, [i if i in present else decoded[-1] for i in indices])


def _decode_decord(path: Path, pick_indices, resize):
    with _native_stderr_silenced():
        reader = decord.VideoReader(str(path), num_threads=1)
    num_frames, fps = len(reader), reader.get_avg_fps()
    if num_frames < 1:
        raise VideoError("no video frames")
    indices = pick_indices(num_frames, fps)
    wanted = sorted(set(indices))
    chunks = [wanted[i : i + DECORD_CHUNK] for i in range(0, len(wanted), DECORD_CHUNK)]
    return torch.cat([resized(reader.get_batch(c).asnumpy(), resize) for c in chunks]), wanted, indices


def _pyav_frames(container, stream, wanted: list[int], fps: float, seek: bool, resize,
                 to_rgb) -> dict[int, torch.Tensor]:
    """The wanted frames (sorted indices), RGB, resized as they arrive. With `seek`, decoding starts at the key
    frame before the first wanted one and a frame's index comes from its timestamp (nothing is
    returned if a frame has none); otherwise frames are counted in order from the start."""
    start = stream.start_time or 0
    if seek:
        container.seek(start + int(wanted[0] / fps / stream.time_base), stream=stream)  # backward, to a key frame
    wanted_set, got, index = set(wanted), {}, -1
    for frame in container.decode(stream):
        if not seek:
            index += 1
        elif frame.pts is None:
            return {}
        else:
            index = round(float((frame.pts - start) * stream.time_base) * fps)
        if index in wanted_set:
            # As a phone's player shows it (decord applies the rotation itself): rotation is in
            # degrees counter-clockwise, as np.rot90 turns.
            image = np.rot90(to_rgb.reformat(frame, format="rgb24").to_ndarray(), round(frame.rotation / 90) % 4)
            got[index] = resized(image[None], resize)[0]
        if index >= wanted[-1]:
            break
    return got


def _decode_pyav(path: Path, pick_indices, resize):
    import av
    from av.video.reformatter import VideoReformatter

    # A converter of this call's own: frame.to_ndarray(format=...) reuses one per thread (PyAV
    # 18.1.1), whose scaling threads a forked loader worker inherits as dead and waits on forever.
    to_rgb = VideoReformatter()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or REFERENCE_FPS)
        num_frames = stream.frames
        if not num_frames and stream.duration:
            num_frames = int(float(stream.duration * stream.time_base) * fps)
        if not num_frames:
            num_frames = sum(1 for _ in container.decode(stream))
            container.seek(0)
        indices = pick_indices(num_frames, fps)
        wanted = sorted(set(indices))
        # Seeking spares decoding everything before a late window; where it cannot place the first
        # wanted frame (no timestamps, an inexact seek), the frames are counted from the start.
        got = _pyav_frames(container, stream, wanted, fps, True, resize, to_rgb) if wanted[0] > 0 else {}
        if wanted[0] not in got:
            if wanted[0] > 0:
                container.seek(0)
            got = _pyav_frames(container, stream, wanted, fps, False, resize, to_rgb)
    if not got:
        raise VideoError("no frame could be decoded")
    decoded = sorted(got)  # fewer than wanted where the container overstates its length
    return torch.stack([got[i] for i in decoded]), decoded, indices


# Decoders by name; each takes (path, pick_indices, resize) and returns (frames of the distinct
# wanted indices that decoded, resized; those indices, sorted; the indices as asked).
BACKENDS = {"decord": _decode_decord, "pyav": _decode_pyav}


def file_problem(path) -> str | None:
    """Why `path` cannot be a video before any decoder opens it (a FIFO would block one forever),
    or None."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return "a symlink to a missing file" if path.is_symlink() else "no such file"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symlink loop"
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISDIR(info.st_mode):
        return f"a folder with no videos in it (files ending in {', '.join(VIDEO_EXTENSIONS)})"
    if not stat.S_ISREG(info.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        return f"{kind}, not a video file"
    if info.st_size == 0:
        return "empty file (0 bytes)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


# What the decoders' messages mean, for people: the first pattern found names the problem.
MEANINGS = (
    ("video stream", "no video stream"),  # decord: "cannot find video stream"; ours for PyAV
    # Opening failed (PyAV names the file, not a codec call, where it gave up).
    (r"error reading|invalid data found when processing input: '(?!avcodec)", "not a video file"),
    (r"avcodec_|buffer source|av_read_frame|no frame could be decoded", "damaged: its frames do not decode"),
)


def mp4_truncation(path: Path) -> str | None:
    """How an MP4 or MOV file is cut short, from its top-level boxes (FFmpeg says "invalid data"
    alike for a cut-off MP4 and for a text file); None where it is not one or its boxes are whole."""
    try:
        size, found, offset = path.stat().st_size, set(), 0
        with open(path, "rb") as f:
            if f.read(8)[4:] != b"ftyp":
                return None
            while offset + 8 <= size:
                f.seek(offset)
                header = f.read(16)
                length, kind = struct.unpack(">I4s", header[:8])
                if length == 1 and len(header) == 16:  # a 64-bit size follows
                    length = struct.unpack(">Q", header[8:])[0]
                elif length == 0:  # the last box, to the end of the file
                    length = size - offset
                if length < 8:  # not a box: damaged, not cut
                    return None
                if offset + length > size:
                    break
                found.add(kind)
                offset += length
    except OSError:
        return None
    if b"moov" not in found:
        return "truncated: no index (moov atom) found"
    return "truncated: the file ends before its last frames" if offset < size else None


def describe(path: Path, messages: list[str]) -> str:
    """One short reason for people: how the file is cut short, else what the decoders' messages
    ("name: message") mean, else the first of them without the decoder's name, error number,
    source line or the file's path."""
    cut = mp4_truncation(path)
    if cut:
        return cut
    text = " ".join(messages).lower()
    for pattern, meaning in MEANINGS:
        if re.search(pattern, text):
            return meaning
    first = messages[0].split(": ", 1)[-1].replace(f": '{path}'", "").replace(str(path), "the file")
    first = re.sub(r"^\[[\d:]+\] \S+:\d+: |\[Errno -?\d+\] ", "", first)
    return first if len(first) <= 80 else first[:79] + "…"


def decode(path, pick_indices, decoder: str = "auto", resize=None, notes: list[str] | None = None) -> torch.Tensor:
    """Frames (len(indices), H, W, 3) uint8 of one video, where pick_indices(num_frames, fps)
    chooses them; each distinct frame is decoded once, and resized ((N, C, H, W) -> (N, C, h, w))
    as it arrives, so that memory follows the output size, not the video's. "auto" is decord, then
    PyAV where decord is missing or fails on the file. Raises VideoError with one reason for
    people and the decoders' own messages as its details. Where fewer frames decode than the
    container says (PyAV reads a file cut short up to its end), the last decoded frame stands in
    for the missing ones, and `notes`, where given, gets a line that says so."""
    if decoder == "decord" and decord is None:
        raise VideoError("decord is not installed")
    problem = file_problem(path)
    if problem:
        raise VideoError(problem)
    names = [n for n in ("decord", "pyav") if n != "decord" or decord is not None] if decoder == "auto" else [decoder]
    messages, promised = [], {}

    def pick(num_frames, fps):
        promised["frames"] = num_frames
        return pick_indices(num_frames, fps)

    for name in names:
        try:
            frames, decoded, indices = BACKENDS[name](Path(path), pick, resize)
        except Interrupted:  # a signal arrived while decoding: the file is not to blame
            raise
        except Exception as e:  # decoders raise many types; each says why this file is bad
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            messages.append(f"{name}: {message}")
            continue
        if notes is not None and len(decoded) < len(set(indices)):
            notes.append(f"fewer frames decode than the {promised['frames']} its container says: "
                         "the last decoded frame is repeated")
        return with_stand_ins(frames, decoded, indices)
    raise VideoError(describe(Path(path), messages), "; ".join(messages))


def probe(path, decoder: str = "auto") -> tuple[int, float]:
    """(frame count, frame rate) of a video, decoding one frame."""
    found = {}
    decode(path, lambda num_frames, fps: found.update(num_frames=num_frames, fps=fps) or [0], decoder)
    return found["num_frames"], found["fps"]

"""`sfcli infer --render` and `--timeline`: a video written again with the current window's top
labels drawn on every frame, and the windows' labels as a CSV."""

from __future__ import annotations

import bisect
import csv
import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sfcli.errors import VideoError
from sfcli.files import write_atomic
from sfcli.infer import VideoPrediction, Window

LABELS_SHOWN = 3


def write_timeline(result: VideoPrediction, path) -> Path:
    """CSV of every window's top labels: start and end in seconds, label, score; best first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["start", "end", "label", "score"])
    for w in result.windows:
        writer.writerows([w.start, w.end, p.label, p.score] for p in w.predictions)
    return write_atomic(path, buffer.getvalue())


def caption(frame: np.ndarray, window: Window, font) -> np.ndarray:
    """The frame with the window's top labels and scores on a dark band in its top-left corner."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image, "RGBA")
    lines = [f"{p.label} {p.score:.2f}" for p in window.predictions[:LABELS_SHOWN]]
    boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
    height = max(b[3] for b in boxes) + 2
    draw.rectangle((0, 0, max(b[2] for b in boxes) + 6, height * len(lines) + 4), fill=(0, 0, 0, 160))
    for i, line in enumerate(lines):
        draw.text((3, 2 + i * height), line, font=font, fill=(255, 255, 255, 255))
    return np.asarray(image)


def render_video(result: VideoPrediction, out, on_frame=None) -> int:
    """Write `result.video` again to `out` (H.264) with each frame captioned by the window it
    falls in (the latest one started by its time); returns the frames written. `on_frame(done,
    total)` after each frame."""
    if not result.windows:
        raise VideoError("rendering needs windows: give --window or leave it to the default")
    starts = [w.start for w in result.windows]
    out, written = Path(out), 0
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    try:
        with av.open(result.video) as source, av.open(str(tmp), "w") as target:
            video = source.streams.video[0]
            video.thread_type = "AUTO"
            rate = video.average_rate or Fraction(result.fps).limit_denominator(1001)
            total = video.frames or round(result.seconds * result.fps)
            # yuv420p, which every player reads, needs even sides: an odd one loses its last row.
            height, width = video.height // 2 * 2, video.width // 2 * 2
            font = ImageFont.load_default(size=max(10, height // 20))
            stream = target.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for frame in source.decode(video):
                window = result.windows[max(bisect.bisect_right(starts, written / float(rate)) - 1, 0)]
                pixels = caption(frame.to_ndarray(format="rgb24")[:height, :width], window, font)
                target.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
                written += 1
                if on_frame:
                    on_frame(written, max(total, written))
            target.mux(stream.encode())
        tmp.replace(out)
    except av.FFmpegError as err:
        raise VideoError(f"cannot render {result.video} to {out} ({err})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return written

"""A built-in benchmark: real mp4 files in the Kinetics layout, with classes built so that both
SlowFast pathways are needed (Feichtenhofer et al., ICCV 2019).

Every video shows one bright sprite moving over a dark, grainy background. Appearance classes are
told apart by the sprite's shape, visible in any single frame. Motion classes all show the same
plain disc and differ only in how it moves within segments of at most ten frames: each segment
starts at a fresh uniform position on a torus (the central arena, wrapping at its edges), so frames
ten or more apart are independent snapshots with the same distribution in every class. The Slow
pathway's frames of a clip are 10 to 11 frames apart (PySlowFast sampling: 16 frames spread over
31), so it sees no difference between motion classes; the Fast pathway, every 2nd frame, does.
Appearance sprites move by a motion drawn at random, so motion says nothing about them. All cues
survive a horizontal flip: vertical direction and timing only, flip-symmetric shapes.

The default dataset has the first eight classes. Eight more are there to be chosen by name (a
network pre-trained on the first eight can then be fine-tuned on new ones): four shapes and four
motions. Of those, blinking and pulsing change single frames too (the disc is missing, or
smaller), so the Slow pathway sees part of them.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import math
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from sfcli.videolist import LABEL_SEPARATOR, MULTI_LABEL_HEADER

CLASS_KINDS = {
    "ring": "appearance",
    "plus sign": "appearance",
    "triangle": "appearance",
    "bar": "appearance",
    "hopping": "motion",
    "jittering": "motion",
    "rising": "motion",
    "falling": "motion",
    # Chosen by name only. New names go at the end: a class's index seeds its videos.
    "square": "appearance",
    "diamond": "appearance",
    "x": "appearance",
    "hourglass": "appearance",
    "bouncing": "motion",
    "resting": "motion",
    "blinking": "motion",
    "pulsing": "motion",
}
CLASS_NAMES = tuple(CLASS_KINDS)
DEFAULT_CLASSES = CLASS_NAMES[:8]  # the built-in benchmark's


class Motion(NamedTuple):
    """How the disc moves within a segment; at each new segment it jumps to a fresh random position."""

    length: int  # frames per segment
    direction: int = 0  # vertical glide: -1 up, +1 down, 0 still
    bounce: bool = False  # glide for the first half of the segment, back for the second
    look: str = "steady"  # "blink": shown in the first half only; "pulse": radius swells and shrinks


MOTIONS = {"hopping": Motion(5), "jittering": Motion(1), "rising": Motion(10, -1), "falling": Motion(10, 1),
           "bouncing": Motion(10, 1, bounce=True), "resting": Motion(10), "blinking": Motion(4, look="blink"),
           "pulsing": Motion(8, look="pulse")}
SPRITE_MOTIONS = DEFAULT_CLASSES[4:]  # appearance sprites move by one of these, drawn at random
MOTION_SPRITE = "disc"
SPLITS = (("train", 0), ("val", 1))
CSV_HEADER = ("label", "youtube_id", "time_start", "time_end", "split")
ARENA_MARGIN = 0.125  # fraction of each side kept free of the sprite, so training crops keep it
MIN_SIDE = 32


# ----------------------------------------------------------------------------- class selection


def select_classes(classes=None) -> list[str]:
    """None: the default classes; an int N: the first N; else a list of built-in names."""
    if classes is None:
        return list(DEFAULT_CLASSES)
    if isinstance(classes, int):
        if not 1 <= classes <= len(CLASS_NAMES):
            raise ValueError(f"classes must be between 1 and {len(CLASS_NAMES)}, got {classes}")
        return list(CLASS_NAMES[:classes])
    names = list(classes)
    unknown = [n for n in names if n not in CLASS_KINDS]
    if unknown or not names or len(set(names)) != len(names):
        what = f"unknown class(es) {', '.join(map(repr, unknown))}" if unknown else "class names must be distinct"
        raise ValueError(f"{what}; choose from {', '.join(CLASS_NAMES)}")
    return names


def check_size(size) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height % 2 or width % 2 or min(height, width) < MIN_SIDE:
        raise ValueError(f"size must be even and at least {MIN_SIDE} on each side (H.264 4:2:0), got {height}x{width}")
    return height, width


# ----------------------------------------------------------------------------- pictures


def sprite_alpha(shape: str, radius: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a flip-symmetric shape on a (2r+1)^2 grid: `inside` is
    the distance into the shape, negative outside."""
    r = math.ceil(radius)
    v, u = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32)  # v points down
    stroke = max(3.0, 0.4 * radius)
    d = np.hypot(u, v)
    if shape == "disc":
        inside = radius - d
    elif shape == "ring":
        inside = np.minimum(radius - d, d - (radius - stroke))
    elif shape == "triangle":  # pointing up: a base and two sides through the apex (0, -radius)
        sides = 0.5 * (v + radius) - 0.866 * abs(u)
        inside = np.minimum(0.5 * radius - v, sides)
    elif shape == "bar":  # a horizontal bar
        inside = np.minimum(radius - abs(u), 0.3 * radius - abs(v))
    elif shape == "square":  # an outline
        side = np.maximum(abs(u), abs(v))
        inside = np.minimum(0.85 * radius - side, side - (0.85 * radius - stroke))
    elif shape == "diamond":  # filled, on its point
        inside = (radius - abs(u) - abs(v)) / math.sqrt(2)
    elif shape == "hourglass":  # two filled triangles, point to point
        inside = np.minimum(0.9 * radius - abs(v), (0.8 * abs(v) - abs(u)) / math.hypot(1, 0.8))
    else:  # plus sign, or x: the plus turned by 45 degrees
        if shape == "x":
            u, v = (u + v) / math.sqrt(2), (v - u) / math.sqrt(2)
        bar = lambda a, b: np.minimum(stroke / 2 - abs(a), radius - abs(b))  # noqa: E731
        inside = np.maximum(bar(u, v), bar(v, u))
    return np.clip(inside + 0.5, 0, 1)


def random_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark background and a sprite at least 100 of 255 brighter in luma, random hues."""
    luma = np.array([0.299, 0.587, 0.114])
    while True:
        background, sprite = rng.uniform(0, 140, 3), rng.uniform(60, 255, 3)
        if luma @ (sprite - background) >= 100:
            return background, sprite


def background_image(height: int, width: int, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flat colour with static fine grain."""
    grain = rng.normal(0, 4, (height, width, 1))
    return (colour + grain).astype(np.float32)


def track(motion: str, frames: int, arena: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frames, 2) integer sprite positions (y, x) on the arena torus, and (frames,) sizes (1: the
    sprite's own, 0: not drawn). Segments of the motion's length, at a random phase, each start at
    an independent uniform position."""
    length, direction, bounce, look = MOTIONS[motion]
    phase = int(rng.integers(length))
    t = np.arange(frames) + phase
    segment, step = t // length, t % length
    starts = rng.uniform(0, 1, (segment[-1] + 1, 2)) * arena
    speed = rng.uniform(0.05, 0.08) * arena[0]  # per frame: half the arena or more per segment
    travel = np.minimum(step, length - 1 - step) if bounce else step
    positions = starts[segment] + np.outer(direction * speed * travel, (1, 0))
    if look == "blink":
        sizes = (step < length / 2).astype(float)
    elif look == "pulse":
        sizes = 0.6 + 0.4 * np.sin(np.pi * step / (length - 1))
    else:
        sizes = np.ones(frames)
    return np.round(positions).astype(int) % arena, sizes


def render(labels, height: int, width: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, height, width, 3) uint8 video of one class (a name), or of several (a tuple of
    names: one sprite each, in the same colour, each moving on its own)."""
    background_colour, sprite_colour = random_colours(rng)
    background = background_image(height, width, background_colour, rng)
    margin = (round(ARENA_MARGIN * height), round(ARENA_MARGIN * width))
    sprites = []
    for label in (labels,) if isinstance(labels, str) else labels:
        shape = MOTION_SPRITE if CLASS_KINDS[label] == "motion" else label
        motion = label if CLASS_KINDS[label] == "motion" else str(rng.choice(SPRITE_MOTIONS))
        radius = rng.uniform(0.1, 0.13) * min(height, width)
        alpha = sprite_alpha(shape, radius)[..., None]
        side = alpha.shape[0]
        # The sprite's corner moves on a torus (the arena); the sprite is always drawn whole
        # inside the frame, so a shape is never cut in pieces.
        arena = (height - 2 * margin[0] - side, width - 2 * margin[1] - side)
        positions, sizes = track(motion, frames, arena, rng)
        looks = {s: alpha if s == 1 else _centred(sprite_alpha(shape, s * radius), side) if s else None
                 for s in np.unique(sizes)}
        sprites.append((looks, side, positions, sizes))
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    for i in range(frames):
        frame = background.copy()
        for looks, side, positions, sizes in sprites:
            alpha = looks[sizes[i]]
            if alpha is None:  # blinked out
                continue
            y, x = positions[i]
            rows, cols = slice(margin[0] + y, margin[0] + y + side), slice(margin[1] + x, margin[1] + x + side)
            frame[rows, cols] += alpha * (sprite_colour - frame[rows, cols])
        video[i] = np.clip(frame, 0, 255)
    return video


def _centred(alpha: np.ndarray, side: int) -> np.ndarray:
    """A smaller sprite's coverage in the middle of a side x side square (both sides are odd)."""
    pad = (side - alpha.shape[0]) // 2
    return np.pad(alpha, pad)[..., None]


# ----------------------------------------------------------------------------- encoding


def pick_codec() -> str:
    """libx264 where this PyAV build can open it, else mpeg4."""
    try:
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
        context.time_base = Fraction(1, 30)
        context.open()
    except Exception:  # a missing encoder or one that fails to open: both mean mpeg4
        return "mpeg4"
    return "libx264"


def encode(path: Path, video: np.ndarray, fps: int, codec: str):
    """Write an mp4. One encoder thread, so the bytes depend only on the pixels."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":  # lossless: compression artefacts must not betray the motion
            stream.options = {"crf": "0", "preset": "veryfast"}
        else:
            stream.bit_rate = 4_000_000
        for image in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


# ----------------------------------------------------------------------------- the dataset


def youtube_id(seed: int, label: str, split: str, index: int) -> str:
    """11 characters of [A-Za-z0-9_-], like a YouTube id, fixed by (seed, class, split, index)."""
    digest = hashlib.sha256(f"{seed}/{label}/{split}/{index}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:8]).decode()[:11]


def _write_video(task) -> tuple:
    """Render and encode one video; its CSV row. Everything it draws comes from its own seed."""
    root, split, split_code, label, index, names, seed, height, width, frames, fps, codec, multi_label = task
    folder = root / split if multi_label else root / split / label
    rng = np.random.default_rng([seed, CLASS_NAMES.index(label), split_code, index])
    video_id = youtube_id(seed, label, split, index)
    if multi_label:
        others = [n for n in names if n != label]
        labels = (label, others[int(rng.integers(len(others)))])
        encode(folder / f"{video_id}.mp4", render(labels, height, width, frames, rng), fps, codec)
        return f"{split}/{video_id}.mp4", LABEL_SEPARATOR.join(labels)
    seconds = math.ceil(frames / fps)
    encode(folder / f"{video_id}_{0:06d}_{seconds:06d}.mp4", render(label, height, width, frames, rng), fps, codec)
    return label, video_id, 0, seconds, split


def write_dataset(out, classes=None, train_per_class: int = 100, val_per_class: int = 20, size=(64, 64),
                  frames: int = 64, fps: int = 30, seed: int = 0, progress=None, multi_label: bool = False,
                  workers: int = 1) -> dict:
    """Write out/{train,val}/<label>/<id>_<start>_<end>.mp4, Kinetics-format train.csv and
    val.csv, and classes.txt; return a summary. progress(done, total) is called per video.
    multi_label: each video shows its class and a second one drawn at random, in
    out/{train,val}/<id>.mp4, listed in multi-label CSVs (header path,labels; labels joined by ';').
    workers: processes encoding videos (the files are the same for any number)."""
    began = time.perf_counter()
    names = select_classes(classes)
    height, width = check_size(size)
    if train_per_class < 1 or val_per_class < 0 or frames < 2 or fps < 1:
        raise ValueError("train_per_class, frames and fps must be positive, and val_per_class not negative")
    if multi_label and len(names) < 2:
        raise ValueError("a multi-label dataset needs at least 2 classes")
    root = Path(out)
    codec = pick_codec()
    counts = {"train": train_per_class, "val": val_per_class}
    total, done = len(names) * (train_per_class + val_per_class), 0
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        for split, split_code in SPLITS:
            for folder in {root / split} if multi_label else {root / split / label for label in names}:
                folder.mkdir(parents=True, exist_ok=True)
            tasks = [(root, split, split_code, label, index, names, seed, height, width, frames, fps, codec,
                      multi_label) for label in names for index in range(counts[split])]
            rows = []
            for row in (pool.map(_write_video, tasks) if pool else map(_write_video, tasks)):
                rows.append(row)
                done += 1
                if progress is not None:
                    progress(done, total)
            with open(root / f"{split}.csv", "w", newline="") as f:
                csv.writer(f, lineterminator="\n").writerows([MULTI_LABEL_HEADER if multi_label else CSV_HEADER,
                                                              *rows])
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in names))
    return {
        "root": str(root),
        "classes": names,
        "train": len(names) * train_per_class,
        "val": len(names) * val_per_class,
        "size": [height, width],
        "frames": frames,
        "fps": fps,
        "codec": "h264" if codec == "libx264" else "mpeg4",
        "multi_label": multi_label,
        "seconds": round(time.perf_counter() - began, 2),
    }

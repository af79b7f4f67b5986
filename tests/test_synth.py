"""`sfcli synth`'s classes: the default eight as they were (the built-in benchmark's cache depends on
their pixels), and eight more chosen by name, each with the cue its name promises."""

import hashlib

import numpy as np
import pytest
from conftest import one_line_error, sfcli

from sfcli.synth import CLASS_KINDS, CLASS_NAMES, render, select_classes, sprite_alpha, track
from sfcli.videolist import read_video_list

DEFAULT = ["ring", "plus sign", "triangle", "bar", "hopping", "jittering", "rising", "falling"]
NEW = ["square", "diamond", "x", "hourglass", "bouncing", "resting", "blinking", "pulsing"]
# sha256 of render(label, 64, 64, 40, rng) for seed 0, train video 3, rendered before the new
# classes were added: the default classes' videos must stay these.
PIXELS = {
    "ring": "6d75b603d4ab4129bdc67d9db371c7e431a915ac29c31fe2cdc9acdb0083cf02",
    "plus sign": "5b5a9d8fbb01af9db42060a1e80b6027484afdb228397e21484a6589a918b3d2",
    "triangle": "938dacf6838ff79b4e8e09397db76083405398f63b777fe846aa59e50ef85a1d",
    "bar": "a2f60ab0e75d4773723fb2b0a4df347a2ae9bff514150d08ceacbb14d3583929",
    "hopping": "268970ac4e30c560d7d738106f1d3f737d0353ccb9f24ff3a366ba7437cae0b1",
    "jittering": "c9f466f45c059bedc8c739b09ffd15f4657539715112b6481a6f2d594082ce8b",
    "rising": "4df369df3e12c11ddf05c0081a85b29f8f6eab5e252cf044121a88de2e532418",
    "falling": "179824cf9fb29e04e81b98a6ef2e175b8f9859a522d72cd7a555995f8dff11e4",
}


def pixels(label, seed=0, split_code=0, index=3):
    rng = np.random.default_rng([seed, CLASS_NAMES.index(label), split_code, index])
    return render(label, 64, 64, 40, rng)


def test_the_default_classes_are_the_eight_they_were_and_the_new_ones_are_chosen_by_name():
    assert select_classes() == DEFAULT and select_classes(8) == DEFAULT
    assert list(CLASS_NAMES) == DEFAULT + NEW  # appended: a class's index seeds its videos
    assert select_classes(NEW[::-1]) == NEW[::-1]
    for label, digest in PIXELS.items():
        assert hashlib.sha256(pixels(label).tobytes()).hexdigest() == digest, label
    with pytest.raises(ValueError, match="unknown class.*'star'.*pulsing"):
        select_classes(["square", "star"])


def test_synth_writes_the_named_classes(tmp_path):
    out = tmp_path / "new"
    result = sfcli("synth", str(out), "--classes", ",".join(NEW), "--train-per-class", "1", "--val-per-class", "1",
                   "--size", "48", "--frames", "20", "--json")
    assert result.returncode == 0, result.stderr
    videos = read_video_list(out / "train.csv")
    assert sorted(videos.classes) == sorted(NEW) and len(videos.paths) == 8
    line = one_line_error(sfcli("synth", str(tmp_path / "bad"), "--classes", "square,star"))
    assert "'star'" in line and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("shape", ["disc"] + [n for n, kind in CLASS_KINDS.items() if kind == "appearance"])
def test_every_shape_survives_a_horizontal_flip_and_the_new_ones_differ(shape):
    alpha = sprite_alpha(shape, 7.5)
    assert np.allclose(alpha, alpha[:, ::-1], atol=1e-5) and alpha.sum() > 20
    others = [s for s in ["disc", *CLASS_KINDS] if CLASS_KINDS.get(s, "appearance") == "appearance" and s != shape]
    assert all(np.abs(alpha - sprite_alpha(o, 7.5)).sum() > 10 for o in others)


def vertical_signs(positions, arena):
    """Frame-to-frame vertical moves on the arena torus: + down, - up, 0 still."""
    steps = (np.diff(positions[:, 0]) + arena[0] // 2) % arena[0] - arena[0] // 2
    return "".join("+" if d > 0 else "-" if d < 0 else "0" for d in steps)


def test_the_new_motions_move_as_named():
    arena, rng = (200, 200), np.random.default_rng(0)
    positions, sizes = track("resting", 60, arena, rng)  # still for ten frames, then a jump
    moved = np.flatnonzero(np.abs(np.diff(positions, axis=0)).sum(1))
    assert len(moved) >= 4 and set(np.diff(moved)) == {10} and (sizes == 1).all()
    positions, _ = track("bouncing", 60, arena, rng)  # down for half of each segment, back up
    assert vertical_signs(positions, arena).count("++++0----") >= 4
    _, sizes = track("blinking", 40, arena, rng)  # on for two frames, off for two
    assert "".join(map(str, sizes.astype(int))) in "1100" * 11  # at any phase
    _, sizes = track("pulsing", 40, arena, rng)
    assert sizes.min() == pytest.approx(0.6) and sizes.max() > 0.95


def sprite_pixels(video):
    """Per frame, the pixels far brighter than the frame's median: the sprite's."""
    luma = video @ np.array([0.299, 0.587, 0.114])
    return (luma > np.median(luma, axis=(1, 2), keepdims=True) + 50).sum(axis=(1, 2))


def test_blinking_and_pulsing_show_in_the_pixels():
    blinking, pulsing, hopping = (sprite_pixels(pixels(label)) for label in ("blinking", "pulsing", "hopping"))
    assert (blinking == 0).sum() >= 15 and (blinking > 0).sum() >= 15
    assert pulsing.max() > 2 * pulsing.min() > 0
    assert hopping.max() - hopping.min() <= 0.05 * hopping.max()  # the grain moves a pixel or two


def test_any_number_of_encoding_processes_writes_the_same_files(tmp_path):
    from sfcli.synth import write_dataset

    for workers in (1, 2):
        write_dataset(tmp_path / str(workers), classes=3, train_per_class=2, val_per_class=1, size=32, frames=8,
                      workers=workers)
    files = {w: sorted(p.relative_to(tmp_path / w) for p in (tmp_path / w).rglob("*") if p.is_file()) for w in "12"}
    assert files["1"] == files["2"] and len(files["1"]) == 3 * 3 + 3  # 9 videos, 2 CSVs, classes.txt
    assert all((tmp_path / "1" / p).read_bytes() == (tmp_path / "2" / p).read_bytes() for p in files["1"])

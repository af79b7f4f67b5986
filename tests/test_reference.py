"""Test views and the test head against values worked out by hand from PySlowFast's Kinetics test
(its PyAV decoder on files with a duration, short-side scale, uniform crops, fully convolutional
head), on real video files."""

import dataclasses

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import frame_levels, frame_number, write_video

from sfcli import data
from sfcli.data import ClipConfig
from sfcli.model import SlowFast
from sfcli.precise_bn import update_bn_stats
from sfcli.predict import reference_head_window, view_probabilities
from sfcli.presets import build_config
from sfcli.transforms import crop_offsets, normalize, scale_short_side, view_clip_indices


@pytest.fixture(scope="session")
def v300(tmp_path_factory):
    """300 frames at 30 fps (10 s), small: the frame numbers are in the pixels."""
    return write_video(tmp_path_factory.mktemp("ref") / "v300.mp4", num_frames=300, size=(32, 32))


def write_ramp(path, size, num_frames=2):
    """Frames whose every column (rows, for a portrait size) has the colour of frame_levels(its
    index): a crop's first column (row) tells its offset, as frame_number reads it."""
    h, w = size
    along = max(h, w)
    ramp = np.zeros((along, 3), dtype=np.uint8)
    ramp[:, :2] = [frame_levels(i) for i in range(along)]
    image = np.broadcast_to(ramp[None] if w >= h else ramp[:, None], (h, w, 3)).copy()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width, stream.pix_fmt = h, w, "yuv444p"  # full-resolution colour
        stream.options = {"crf": "0"}
        for _ in range(num_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# 30 fps, T = 32 at stride 2: the seek window is ceil(2 * 31 / 30 * 30) = ceil(62.00000000000001) = 63
# frames, leaving 300 - 63 = 237 free; clip i of 10 starts at 23.7 * i, so its first whole frame is
# ceil(23.7 * i). Decoded: that frame up to floor(start + 62) + 1; picks floor(k * 63 / 31) (the
# 64-frame clip's linspace) clamped to what was decoded.
FIRST_FRAMES = [0, 24, 48, 72, 95, 119, 143, 166, 190, 214]
CLIP0 = [*range(0, 61, 2), 63]  # 64 frames decoded (62.0 lands on a frame): the last pick is 63
CLIP1 = list(range(24, 87, 2))  # 63 decoded (24..86): the last pick, 63, is clamped to 62


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_clip_starts_and_frames_of_a_300_frame_video(v300, decoder):
    clip = ClipConfig(frames=32, stride=2, test_short=32, test_crop=32, num_clips=10, num_crops=1)
    views = data.test_views(v300, clip, decoder)[0]
    frames = [[frame_number(views[v, :, t]) for t in range(32)] for v in range(10)]
    assert [f[0] for f in frames] == FIRST_FRAMES
    assert frames[0] == CLIP0 and frames[1] == CLIP1
    assert all(f == list(range(s, s + 63, 2)) for s, f in zip(FIRST_FRAMES[1:], frames[1:]))
    # The Slow pathway's frames: linspace(0, 31, 8) floored, not every 4th.
    slow = SlowFast(build_config("slowfast_8x8_r50")).slow_index.tolist()
    assert slow == [0, 4, 8, 13, 17, 22, 26, 31]
    assert [frames[0][i] for i in slow] == [0, 8, 16, 26, 34, 44, 52, 63]
    # One clip: at the very start (start = 237 * 0 / 1), not centred.
    single = data.test_views(v300, ClipConfig(frames=32, stride=2, test_short=32, test_crop=32, num_clips=1,
                                         num_crops=1), decoder)[0]
    assert [frame_number(single[0, :, t]) for t in range(32)] == CLIP0


def test_clip_starts_at_other_frame_rates():
    # 25 fps, 250 frames: window ceil(2 * 31 / 30 * 25) = ceil(51.67) = 52, 198 free, starts 19.8 * i;
    # picks floor(k * 52.33 / 31) of the 53.33-frame span.
    clips = [view_clip_indices(250, 25.0, 32, 2, i, 10) for i in range(10)]
    assert [c[0] for c in clips] == [0, 20, 40, 60, 80, 99, 119, 139, 159, 179]
    assert clips[0][:6] == [0, 1, 3, 5, 6, 8] and clips[0][-1] == 52
    # 60 fps, 600 frames: window ceil(124.00000000000001) = 125, 475 free, starts 47.5 * i; picks
    # floor(k * 127 / 31), the last (127) clamped to the 126 frames decoded.
    clips = [view_clip_indices(600, 60.0, 32, 2, i, 10) for i in range(10)]
    assert [c[0] for c in clips] == [0, 48, 95, 143, 190, 238, 285, 333, 380, 428]
    assert clips[0][:4] == [0, 4, 8, 12] and clips[0][-2:] == [122, 125]


def test_crop_offsets_round_up():
    # ceil((W - 256) / 2) in the middle, W - 256 at the end; round-half-even would give 100 and 42.
    assert crop_offsets(340, 256, 3) == [0, 42, 84]
    assert crop_offsets(457, 256, 3) == [0, 101, 201]
    assert crop_offsets(341, 256, 3) == [0, 43, 85]
    assert crop_offsets(455, 256, 3) == [0, 100, 199] and crop_offsets(256, 256, 3) == [0, 0, 0]


@pytest.mark.parametrize("size, offsets", [((32, 41), [0, 5, 9]), ((41, 32), [0, 5, 9])])
def test_crops_of_a_real_file_sit_at_ceil_offsets(tmp_path, size, offsets):
    """A margin of 9 (odd, like 457 - 256): the centre crop starts at ceil(4.5) = 5, on either side."""
    path = write_ramp(tmp_path / "ramp.mp4", size)
    clip = ClipConfig(frames=2, stride=1, test_short=32, test_crop=32, num_clips=1, num_crops=3)
    views = data.test_views(path, clip)[0]  # (3, C, T, 32, 32)
    first = (lambda v: v[:, 0, :, :1]) if size[1] >= size[0] else (lambda v: v[:, 0, :1, :])  # noqa: E731
    assert [frame_number(first(v)) for v in views] == offsets


def test_short_side_scaled_without_antialias_long_side_floored():
    frames = torch.randint(0, 256, (2, 3, 240, 320), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = scale_short_side(frames, 256)
    assert out.shape[-2:] == (256, 341)  # 320 * 256 / 240 = 341.33, floored (rounding would give 341 too)
    assert scale_short_side(frames[..., :90, :], 256).shape[-2:] == (256, 910)  # 910.2; round: 910
    assert scale_short_side(frames[..., :144, :176], 256).shape[-2:] == (256, 312)  # 312.9; round: 313
    same = torch.zeros(1, 3, 256, 300, dtype=torch.uint8)
    assert scale_short_side(same, 256) is same  # the short side is already 256: no resize
    # The reference resizes the normalised float frames: the same up to half a level of rounding.
    theirs = F.interpolate(normalize(frames, 0.45, 0.225), size=(256, 341), mode="bilinear", align_corners=False)
    assert (normalize(out, 0.45, 0.225) - theirs).abs().max() <= 0.5 / 255 / 0.225 + 1e-6
    assert scale_short_side(frames.transpose(-1, -2), 256).shape[-2:] == (341, 256)


def reference_head(model, maps, window):
    """By hand: every window x window placement at stride 1, features averaged over time and the
    window, the classifier at each, the softmaxes averaged."""
    h, w = maps[0].shape[-2:]
    probs = []
    for y in range(h - window + 1):
        for x in range(w - window + 1):
            feature = torch.cat([m[:, :, :, y : y + window, x : x + window].mean(dim=(2, 3, 4)) for m in maps], 1)
            probs.append(model.fc(feature).softmax(1))
    return torch.stack(probs).mean(0)


@torch.no_grad()
def test_head_on_a_256_view_of_a_real_file(tmp_path):
    """340x256 video, a network trained on 224 crops: 256 views give 8x8 res5 maps, so the head
    averages the softmaxes of 2x2 positions of a 7x7 window; crops at x = 0, 42, 84."""
    path = write_ramp(tmp_path / "v340.mp4", (256, 340), num_frames=4)
    clip = ClipConfig(frames=4, stride=1, crop=224, test_short=256, test_crop=256, num_clips=1, num_crops=3)
    views = data.test_views(path, clip)[0]
    assert views.shape == (3, 3, 4, 256, 256)
    assert [frame_number(v[:, 0, :, :1]) for v in views] == [0, 42, 84]
    torch.manual_seed(0)
    model = SlowFast(build_config("slowfast_tiny", width=8, frames=1, alpha=4, tau=4, num_classes=5)).eval()
    x = normalize(views, clip.mean, clip.std)
    maps = model.res5(x)
    torch.nn.init.normal_(model.fc.weight)
    model.fc.weight *= 2 / model(x).std()  # logits spread by about 2: probabilities far from 0 and 1
    assert [tuple(m.shape[-3:]) for m in maps] == [(1, 8, 8), (4, 8, 8)]
    expected = reference_head(model, maps, 7)
    global_probs = model(x).softmax(1)
    model.head_window = 7
    probs = view_probabilities(model, views, clip, torch.device("cpu"))
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)
    assert (probs - global_probs).abs().max() > 1e-4  # the global pool is another function
    # At the training size the map is 7x7: one position, the global head.
    small = x[..., :224, :224]
    torch.testing.assert_close(model(small).softmax(1), F.softmax(model.fc(model.features(small)), 1),
                               rtol=0, atol=1e-6)


@torch.no_grad()
def test_precise_bn_averages_the_batches_statistics():
    bn = torch.nn.BatchNorm3d(2, momentum=0.1)
    net = torch.nn.Sequential(bn).eval()
    batches = [torch.randn(3, 2, 2, 2, 2) * (i + 1) + i for i in range(4)]
    assert update_bn_stats(net, iter(batches)) == 4
    means = torch.stack([b.mean(dim=(0, 2, 3, 4)) for b in batches])
    variances = torch.stack([b.transpose(0, 1).flatten(1).var(1) for b in batches])  # unbiased, as BN keeps
    torch.testing.assert_close(bn.running_mean, means.mean(0))
    torch.testing.assert_close(bn.running_var, variances.mean(0))
    assert bn.momentum == 0.1 and not net.training


@torch.no_grad()
def test_a_multi_label_network_averages_the_positions_sigmoids():
    """Multi-label scoring on a view larger than the training crop: each position's sigmoid,
    averaged (a softmax of log-averaged softmaxes would be another thing)."""
    torch.manual_seed(0)
    model = SlowFast(build_config("slowfast_tiny", width=8, frames=1, alpha=4, tau=4, num_classes=5)).eval()
    clip = ClipConfig(frames=4, stride=1, crop=32, test_short=64, test_crop=64, num_clips=1, num_crops=1)
    views = torch.randint(0, 256, (2, 3, 4, 64, 64), dtype=torch.uint8)
    x = normalize(views, clip.mean, clip.std)
    maps = model.res5(x)
    pooled = torch.cat([F.avg_pool3d(m, (m.shape[2], 1, 1), stride=1) for m in maps], 1).flatten(2).transpose(1, 2)
    expected = model.fc(pooled).sigmoid().mean(1)
    model.head_window = reference_head_window(model.cfg, clip)
    assert model.head_window == 1
    probs = view_probabilities(model, views, clip, torch.device("cpu"), multi_label=True)
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-5)
    assert reference_head_window(model.cfg, dataclasses.replace(clip, test_crop=32)) is None

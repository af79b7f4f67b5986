"""Multigrid training: the reference's long-cycle schedule and rates, the short cycle's batches,
and a real run on real files."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import frame_number, one_line_error, sfcli, write_video

from sfcli import multigrid
from sfcli.console import Reporter
from sfcli.data import ClipConfig, VideoDataset, collate
from sfcli.files import load_checkpoint
from sfcli.presets import build_config, clip_config, create_model
from sfcli.recipe import TrainConfig
from sfcli.training import train
from sfcli.videolist import VideoList, read_video_list


def test_kinetics_schedule_is_the_references():
    """PySlowFast's stepwise multigrid Kinetics recipe (steps 0, 94, 154, 196 of 239 epochs, epoch
    factor 1.5), worked by hand from its formulas: mean batches of the four long cycles with short
    cycles 32/3, 16/3, 14/3, 7/3 (sum 23); stage 0's first share 94 * (32/3) / 23 = 43.594 epochs;
    iterations saved 196 / (4 * 196 / 23) = 5.75; fine-tuning 43 / 5.75 * 7/3 = 17.449 epochs;
    stretch 358.5 / 213.449 = 1.6796, so the first phase ends at round(73.22) = 73 and the run at
    358, the last phase split at (329 + 358) // 2 = 343."""
    phases = multigrid.schedule(239)
    assert [p.end for p in phases] == [73, 110, 142, 158, 205, 228, 248, 259, 291, 308, 322, 329, 343, 358]
    assert [p.batch_factor for p in phases] == [8, 4, 2, 1] * 3 + [1, 1]
    assert [p.stage for p in phases] == [0] * 4 + [1] * 4 + [2] * 4 + [2, 3]
    lr = lambda e: multigrid.learning_rate(phases, e, 0.1, 34, 0.1)  # noqa: E731
    assert lr(0) == pytest.approx(0.01)  # warm-up from 10%
    assert lr(34) == pytest.approx(0.1 * 8) and lr(17) == pytest.approx((0.01 + 0.8) / 2)
    assert lr(72.9) == pytest.approx(0.8) and lr(73) == pytest.approx(0.4)  # rate scaled by the batch
    assert lr(160) == pytest.approx(0.1 * 0.1 * 8) and lr(330) == pytest.approx(0.1 * 0.01)
    assert lr(343) == pytest.approx(0.1 * 0.001) and lr(400) == pytest.approx(0.1 * 0.001)


def test_a_short_run_skips_the_phases_that_round_to_no_epoch():
    """8 epochs, worked by hand as above: stages end at 3.146, 5.155, 6.561 of 8; stretch 12 / 7.145;
    the phases end at 2, 4, 5, 5, 7, 8, 8, 9, 10, 10, 11, 11, 11, 12, so five of them get no epoch
    and the full shape trains epochs 9 (stage 1) and 12 (the last phase) only."""
    clip = clip_config(build_config("slowfast_tiny"), "slowfast_tiny")  # 32 frames at 48²
    phases = multigrid.schedule(8)
    shapes, skipped = multigrid.planned_shapes(phases, clip, batch_size=16, base_lr=0.025)
    assert skipped == 5 and len(shapes) == 9
    assert [s.first_epoch for s in shapes] == [1] + [s.last_epoch + 1 for s in shapes[:-1]]  # no gap
    assert shapes[-1].last_epoch == 12 and [s.epochs for s in shapes[:3]] == ["1-2", "3-4", "5"]
    assert [s.last_epoch for s in shapes if (s.frames, s.crop) == (32, 48)] == [9, 12]
    assert (shapes[0].batch, shapes[0].frames, shapes[0].crop, shapes[0].lr) == (128, 8, 34, pytest.approx(0.2))
    for s in shapes:  # the rate each epoch trains at, after the warm-up
        assert s.lr == pytest.approx(multigrid.learning_rate(phases, s.first_epoch - 1, 0.025, 0, 0.1))
    assert multigrid.planned_shapes(multigrid.schedule(239), clip, 16, 0.025)[1] == 0


def test_short_cycle_batches_cost_alike_and_cover_the_epoch_once():
    cfg = build_config("slowfast_tiny")
    clip = clip_config(cfg, "slowfast_tiny")  # 32 frames at stride 2, 48 crops of sides 55..69
    first = multigrid.schedule(8)[0]
    steps = multigrid.step_clips(clip, first, short_cycle=True)
    # (0.25 T, 1/sqrt(2) S) with 8x the batch; then half-side crops at 2x more, and the long cycle's side.
    assert [(b, c.frames, c.stride, c.max_stride, c.crop, c.min_short, c.max_short) for b, c in steps] == [
        (16, 8, 2, 8, 24, 28, 34), (8, 8, 2, 8, 34, 39, 49), (8, 8, 2, 8, 34, 39, 49)]
    assert all(b * c.frames * c.crop**2 == pytest.approx(clip.frames * clip.crop**2, rel=0.02) for b, c in steps)
    order = list(range(1000))
    batches = multigrid.epoch_batches(order, clip, first, batch_size=4, world_size=2)
    assert [len(b) for b in batches] == [64, 32, 32] * 7 + [64, 32]
    flat = [i for b in batches for i, _ in b]
    assert flat == order[: len(flat)]  # each video once, in the epoch's order
    shares = [multigrid.rank_share(batches[0], r, 2) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 32 and not {i for i, _ in shares[0]} & {i for i, _ in shares[1]}
    assert len(multigrid.epoch_batches(list(range(10)), clip, first, batch_size=4, world_size=2)) == 1


def test_a_coarse_clip_is_read_at_a_stride_drawn_up_to_the_full_span(tmp_path):
    """As the reference's LONG_CYCLE_SAMPLING_RATE: each coarse clip's frames are evenly spaced at
    a stride drawn per clip from the full clip's to the one spanning the full clip's time."""
    path = write_video(tmp_path / "v.mp4", num_frames=120, size=(32, 32))
    videos = VideoList([path] * 24, [0] * 24, ["a"], "kinetics-csv", tmp_path / "list.csv")
    clip = ClipConfig(frames=32, stride=2, crop=32, min_short=32, max_short=32)
    _, coarse = multigrid.step_clips(clip, multigrid.schedule(8)[0], short_cycle=False)[0]
    assert (coarse.frames, coarse.stride, coarse.max_stride) == (8, 2, 8)
    dataset = VideoDataset(videos, clip, train=True)
    strides = []
    for i in range(24):
        frames = dataset[(i, coarse)]["clip"]
        numbers = [frame_number(frames[:, t]) for t in range(coarse.frames)]
        gaps = np.diff(numbers)
        assert gaps.max() - gaps.min() <= 1  # evenly spaced
        strides.append((numbers[-1] - numbers[0] + 1) / coarse.frames)  # 30 fps: the span is frames * stride
        assert torch.equal(dataset[(i, coarse)]["clip"], frames)  # a function of (seed, epoch, index)
    assert all(2 - 1 / 8 <= s <= 8 + 1 / 8 for s in strides)
    assert len({round(s) for s in strides}) >= 4
    full = {len({frame_number(dataset[i]["clip"][:, t]) for t in range(32)}) for i in range(4)}
    assert full == {32}  # the full clip keeps its stride: 32 distinct frames of 120


def test_coarse_clips_are_read_and_run_at_their_shape(synth):
    videos = read_video_list(synth / "train.csv")
    model = create_model("slowfast_tiny", num_classes=len(videos.classes))
    clip = clip_config(model.cfg, "slowfast_tiny")
    dataset = VideoDataset(videos, clip, train=True)
    _, coarse = multigrid.step_clips(clip, multigrid.schedule(8)[0], short_cycle=True)[0]
    batch = collate([dataset[(i, coarse)] for i in range(3)])
    assert batch["clip"].shape == (3, 3, 8, 24, 24)
    assert model(batch["clip"].float()).shape == (3, len(videos.classes))
    # the full shape is what an index alone gives, as without multigrid
    assert torch.equal(dataset[(0, clip)]["clip"], dataset[0]["clip"])


def test_a_multigrid_run_trains_its_epochs_with_fewer_steps(synth, tmp_path):
    run = tmp_path / "run"
    result = sfcli("train", "--data", str(synth / "train.csv"), "--arch", "slowfast_tiny", "--crop", "32",
                   "--epochs", "2", "--multigrid", "--batch-size", "2", "--log-every", "1", "--views", "1x1",
                   "--workers", "0", "--out", str(run), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 3 == multigrid.schedule(2)[-1].end  # 1.5x the epochs given
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "step" in r]
    per_epoch = {e: sum(1 for r in steps if r["epoch"] == e) for e in (1, 2, 3)}
    assert per_epoch[1] < 16 // 2  # coarse clips in batches larger than 2
    assert json.loads((run / "config.json").read_text())["train"]["multigrid"] is True
    assert "the multigrid schedule" in result.stderr
    assert "sfcli: warning: --multigrid at 2 epochs: 11 of the schedule's 14 phases round to no epoch" in result.stderr


def test_batch_norm_sees_the_runs_own_batch_in_larger_multigrid_steps(synth, tmp_path):
    """Multigrid's larger steps at batch size 2 run in chunks of 2 (the reference's sub-batch BN):
    no batch-norm layer normalizes more than 2 clips at once in training mode."""
    videos = read_video_list(synth / "train.csv")
    model = build_config("slowfast_tiny", num_classes=len(videos.classes))
    clip = dataclasses.replace(clip_config(model, "slowfast_tiny", views=(1, 1)), crop=32)
    seen = []

    def record(module, inputs, output):
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.training:
            seen.append(len(inputs[0]))

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        cfg = TrainConfig(epochs=1, batch_size=2, multigrid=True, log_every=1, workers=0)
        result = train(tmp_path / "run", videos, model, clip, cfg, reporter=Reporter(enabled=False))
    finally:
        hook.remove()
    clips = round(result.history[0].clips_per_s * result.history[0].seconds)
    steps = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if "step" in r]
    assert len(steps) < clips / 2  # steps of more than 2 clips...
    assert max(seen) == 2  # ...each normalized 2 at a time


def test_too_few_frames_for_the_long_cycle_is_one_line(synth, tmp_path):
    line = one_line_error(sfcli("train", "--data", str(synth / "train.csv"), "--arch", "slowfast_tiny", "--frames",
                                "2", "--multigrid", "--out", str(tmp_path / "run")))
    assert "--multigrid" in line and "frames" in line


def test_a_killed_multigrid_run_resumes_bit_exact(synth, tmp_path):
    args = ["--data", str(synth / "train.csv"), "--arch", "slowfast_tiny", "--crop", "32", "--epochs", "8",
            "--multigrid", "--batch-size", "2", "--checkpoint-every", "1", "--views", "1x1", "--workers", "0"]
    whole = sfcli("train", *args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "sfcli", "train", *args, "--out", str(run)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:  # killed once two epochs are done
        path = run / "checkpoint.pt"
        if path.exists() and load_checkpoint(path)["run_state"]["epoch"] >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Of the schedule's 12 epochs (each a few steps here): unfinished, with room for a slow kill.
    assert load_checkpoint(run / "checkpoint.pt")["run_state"]["epoch"] < 12 == multigrid.schedule(8)[-1].end
    resumed = sfcli("train", *args, "--out", str(run))
    assert resumed.returncode == 0 and "resuming" in resumed.stderr, resumed.stderr
    a, b = (load_checkpoint(f / "checkpoint.pt")["model"] for f in (tmp_path / "whole", run))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_trains_to_the_end_of_its_last_phase():
    """The run's epochs are where the schedule ends (the reference's MAX_EPOCH), not 1.5x rounded
    apart from it: for 5 epochs the phases end at 7, where round(7.5) would be 8."""
    from sfcli.recipe import TrainConfig

    for epochs in (1, 5, 8, 13, 239):
        assert TrainConfig(epochs=epochs, multigrid=True).run_epochs == multigrid.schedule(epochs)[-1].end
    assert TrainConfig(epochs=5, multigrid=True).run_epochs == 7

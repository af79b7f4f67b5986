"""A look at a run: best.pt by validation top-1, loss and lr every N steps in metrics.jsonl (kept
exactly as far as the checkpoint on resume), TensorBoard as an optional extra, `sfcli plot`."""

import json
import shutil

import pytest
import torch
from conftest import one_line_error, sfcli

from sfcli.files import load_checkpoint
from sfcli.runs import EpochRecord, RunState, _records_until, read_run

TINY = ["--arch", "slowfast_tiny", "--width", "8", "--crop", "32", "--batch-size", "4", "--workers", "0",
        "--views", "1x1"]


@pytest.fixture(scope="module")
def logged(synth, tmp_path_factory):
    """3 epochs of 4 steps, a step record every 2 steps."""
    run = tmp_path_factory.mktemp("look") / "run"
    result = sfcli("train", "--data", str(synth), *TINY, "--epochs", "3", "--log-every", "2", "--out", str(run),
                   "--json")
    assert result.returncode == 0, result.stderr
    return run, json.loads(result.stdout)


def test_step_records_sit_between_epoch_records(logged):
    run, summary = logged
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    kinds = ["step" if line.get("kind") == "step" else "epoch" for line in lines]
    assert kinds == ["step", "step", "epoch"] * 3
    steps = [line for line in lines if line.get("kind") == "step"]
    assert [(s["epoch"], s["step"]) for s in steps] == [(e, s) for e in (1, 2, 3) for s in (2, 4)]
    assert [s["epochs"] for s in steps] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert all(s["loss"] > 0 and s["lr"] > 0 for s in steps)
    for epoch in (0, 1, 2):  # the epoch's loss is the mean of its two halves (equal clips)
        halves = [s["loss"] for s in steps[2 * epoch: 2 * epoch + 2]]
        assert summary["history"][epoch]["loss"] == pytest.approx(sum(halves) / 2, abs=1e-4)
    read = read_run(run)
    assert len(read.history) == 3 and len(read.steps) == 6 and read.steps[0].epochs == 0.5


def test_best_checkpoint_is_the_first_epoch_of_best_validation_top1(logged, synth):
    run, summary = logged
    scores = [h["val_top1"] for h in summary["history"]]
    best_epoch = scores.index(max(scores)) + 1
    best = load_checkpoint(run / "best.pt")
    assert best["epoch"] == best_epoch and "optimizer" not in best
    if best_epoch == len(scores):  # the latest is the best: the same weights
        latest = load_checkpoint(run / "checkpoint.pt")["model"]
        assert all(torch.equal(best["model"][k], latest[k]) for k in latest)
    result = sfcli("eval", "--checkpoint", str(run / "best.pt"), "--data", str(synth / "val.csv"), "--views", "1x1",
                   "--workers", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["top1"] == pytest.approx(max(scores), abs=0.01)  # the same 1x1 validation


def test_resume_keeps_step_records_as_far_as_the_checkpoint(tmp_path):
    step = lambda e, s: {"kind": "step", "epoch": e, "step": s, "epochs": e - 1 + s / 4, "loss": 1.0, "lr": 0.1}  # noqa: E731
    epoch1 = EpochRecord(1, 1.0, 0.1, 50.0, 1.0, 10.0)
    lines = [step(1, 2), step(1, 4), epoch1.to_json(), step(2, 2), step(2, 4)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kind": "st')
    kept = _records_until(tmp_path, RunState(epoch=1, step=3, history=[epoch1]))
    assert kept == lines[:4]


def test_plot_draws_several_runs_on_one_figure(logged, tmp_path):
    run, summary = logged
    other = shutil.copytree(run, tmp_path / "copy")
    result = sfcli("plot", str(run), str(other), "--out", str(tmp_path / "curves.png"), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = [h["val_top1"] for h in summary["history"]]
    assert [r["steps"] for r in out["runs"]] == [6, 6]
    first = out["runs"][0]
    assert first["metric"] == "top1" and first["best_val"] == max(scores)
    assert first["best_epoch"] == scores.index(max(scores)) + 1
    assert "is not a readable sfcli run folder" in one_line_error(sfcli("plot", str(tmp_path)))


def test_tensorboard_missing_is_one_sentence_before_anything_is_written(synth, tmp_path):
    fake = tmp_path / "site" / "tensorboard"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('tensorboard is not installed')\n")
    result = sfcli("train", "--data", str(synth), *TINY, "--epochs", "1", "--tensorboard", "--out",
                   str(tmp_path / "run"), env={"PYTHONPATH": str(tmp_path / "site")})
    assert "pip install 'sfcli[tensorboard]'" in one_line_error(result)
    assert not (tmp_path / "run").exists()


def test_tensorboard_event_files(synth, tmp_path):
    pytest.importorskip("tensorboard")
    result = sfcli("train", "--data", str(synth), *TINY, "--epochs", "1", "--log-every", "2", "--tensorboard",
                   "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))

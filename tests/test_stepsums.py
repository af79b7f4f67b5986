"""A training step's loss and accuracy stay on the device and are reduced every REDUCE_EVERY
steps: a run's metrics.jsonl is exactly that of a reduction after every step, and across two gloo
processes the sums, the stop signal, a nan loss and the quarantined videos come out as a
reduction after every step gives them."""

import json
import signal
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import sfcli

from sfcli.errors import TrainingError
from sfcli.files import load_checkpoint
from sfcli.runs import RunState
from sfcli.stepsums import REDUCE_EVERY, StepSums
from sfcli.synth import write_dataset


def test_metrics_reduced_every_few_steps_are_those_reduced_after_every_step(tmp_path):
    write_dataset(tmp_path / "data", classes=4, train_per_class=6, val_per_class=0, size=(48, 48), frames=40)
    args = ["train", "--data", str(tmp_path / "data" / "train.csv"), "--arch", "slowfast_tiny", "--crop", "32",
            "--batch-size", "1", "--workers", "0", "--epochs", "2", "--log-every", "7"]
    # 24 steps an epoch, reduced after steps 7, 14, 20 (a full window), 21 and 24; with a checkpoint
    # after every step, after every step.
    assert REDUCE_EVERY < 24
    runs = tmp_path / "windowed", tmp_path / "every_step"
    for run, extra in zip(runs, ([], ["--checkpoint-every", "1"])):
        result = sfcli(*args, *extra, "--out", str(run))
        assert result.returncode == 0, result.stderr

    def records(run):
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("seconds", "clips_per_s")} for r in lines]

    windowed, every_step = map(records, runs)
    assert [r.get("step") for r in windowed] == [7, 14, 21, None] * 2
    assert windowed == every_step
    a, b = (load_checkpoint(run / "checkpoint.pt")["model"] for run in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def _two_processes(rank: int, store: str, out: str) -> None:
    """Steps of known losses on two processes (2 and 3 clips a step), reduced as training reduces
    them: a full window, 5 more steps ending in each process's own stop signal, then a nan."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    generator = torch.Generator().manual_seed(rank)
    sums, state, seen = StepSums(torch.device("cpu")), RunState(), {"steps": [], "signals": []}
    checkpoint = Path(out) / "checkpoint.pt"  # none written yet

    def step(loss):
        clips = 2 + rank
        hits = torch.rand(clips, generator=generator) < 0.5
        failed = state.step % (3 - rank) == 0  # rank 0 every 3rd step, rank 1 every 2nd: both at 0, 6, ...
        failures = [(100 * rank + state.step, f"rank {rank}")] if failed else []
        sums.add(state.step, loss.double() * clips, hits, clips, failures)
        seen["steps"].append((float(loss), int(hits.sum()), clips))
        state.step += 1

    for steps, signum in ((REDUCE_EVERY, 0), (5, (signal.SIGINT, signal.SIGTERM)[rank])):
        for _ in range(steps):
            step(torch.rand((), generator=generator) * 3)
        seen["signals"].append(sums.reduce(state, signum, checkpoint))
    sums.gather_failures(state, [f"video{i}" for i in range(200)])
    for i in range(4):
        step(torch.tensor(float("nan")) if rank == 1 and i == 2 else torch.rand((), generator=generator) * 3)
    try:
        sums.reduce(state, 0, checkpoint)
    except TrainingError as e:
        seen["error"] = str(e)
    seen.update(loss_sum=state.loss_sum, correct=state.correct, clips=state.clips,
                bad_videos=list(state.bad_videos.items()))
    (Path(out) / f"{rank}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


def test_two_processes_reduce_to_the_sums_of_a_reduction_after_every_step(tmp_path):
    mp.spawn(_two_processes, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    loss_sum = correct = clips = 0.0
    for (l0, h0, n0), (l1, h1, n1) in list(zip(ranks[0]["steps"], ranks[1]["steps"]))[: REDUCE_EVERY + 7]:
        loss_sum += l0 * n0 + l1 * n1  # the old per-step arithmetic: host floats, summed over processes
        correct += h0 + h1
        clips += n0 + n1
    failures = [(f"video{100 * rank + s}", f"rank {rank}") for s in range(REDUCE_EVERY + 5) for rank in (0, 1)
                if s % (3 - rank) == 0]
    for seen in ranks:
        assert seen["signals"] == [0, signal.SIGTERM]
        assert seen["error"] == (f"the loss became nan at epoch 1 step {REDUCE_EVERY + 8}; the run stopped, "
                                 "before its first checkpoint (try a lower --lr)")
        assert (seen["loss_sum"], seen["correct"], seen["clips"]) == (loss_sum, correct, clips)
        assert [tuple(b) for b in seen["bad_videos"]] == failures

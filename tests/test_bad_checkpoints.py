"""Bad checkpoints and weights (missing, carrying code, malformed or absurd settings, stem
tensors of no shape) and run folders (in use, below a file, a full disk, convert over a run's own
checkpoint) made here, through the real command line: a non-zero exit, one line on stderr, and
the run folder left as it was (tests/badinputs.py: the corpus and the checks)."""

import subprocess
import sys

import pytest
import torch
from badinputs import (
    TINY,
    assert_one_line,
    cases,
    ends_in_one_line,
    refused_within_memory,
    run_in_process,
    snapshot,
    train,
    write,
)
from conftest import sfcli

from sfcli.errors import WriteError
from sfcli.files import load_checkpoint, save_checkpoint
from sfcli.layouts import translate


def checkpoint_with(corpus, name, **changes):
    """The run's checkpoint with some entries replaced (None: removed)."""
    payload = load_checkpoint(corpus["run"] / "checkpoint.pt")
    for key, value in changes.items():
        payload[key] = value
    path = corpus["root"] / name
    torch.save(payload, path)
    return path


def model_changed(corpus, name, **fields):
    payload = load_checkpoint(corpus["run"] / "checkpoint.pt")
    return checkpoint_with(corpus, name, model_config={**payload["model_config"], **fields})


def clip_changed(corpus, name, clip):
    return checkpoint_with(corpus, name, clip=clip)


def pytorchvideo_stem(corpus, name, stem):
    sd = translate(load_checkpoint(corpus["run"] / "checkpoint.pt")["model"], "sfcli", "pytorchvideo")
    sd["blocks.0.multipathway_blocks.0.conv.weight"] = stem
    path = corpus["root"] / name
    torch.save(sd, path)
    return path


# (id, command line made from the corpus, exit code, words the one line must hold)
CASES = [
    # run folders
    ("other-settings-on-the-run", lambda c: train(c, c["synth"], "--seed", "5"), 1, "other settings"),
    ("out-below-a-file", lambda c: ["train", "--data", str(c["synth"]), *TINY, "--out",
                                    str(write(c, "plain-file", "x") / "run")], 1, "is a file, not a folder"),
    ("convert-below-a-file", lambda c: ["convert", str(c["run"]), str(write(c, "plain-file", "x") / "w.pt")], 1,
     "is a file, not a folder"),
    ("convert-over-the-run", lambda c: ["convert", str(c["run"]), str(c["run"] / "checkpoint.pt")], 1,
     "training checkpoint"),
    # checkpoints
    ("checkpoint-missing", lambda c: ["infer", "--checkpoint", str(c["root"] / "no.pt"), str(c["video"])], 1,
     "does not exist"),
    ("checkpoint-carries-code", lambda c: ["infer", "--checkpoint", str(write(c, "code.pt", b"\x80\x02cposix\nsystem"
                                                                                b"\nq\x00.")), str(c["video"])],
     1, "carries code"),
    ("clip-a-string", lambda c: ["infer", "--checkpoint", str(clip_changed(c, "s.pt", "abc")), str(c["video"])], 1,
     "view settings"),
    ("clip-unknown-key", lambda c: ["infer", "--checkpoint", str(clip_changed(c, "u.pt", {"bogus": 1})),
                                    str(c["video"])], 1, "view settings"),
    ("clip-zero-frames", lambda c: ["infer", "--checkpoint", str(clip_changed(c, "z.pt", {"frames": 0})),
                                    str(c["video"])], 1, "view settings"),
    ("clip-huge-frames", lambda c: ["infer", "--checkpoint", str(clip_changed(c, "h.pt", {"frames": 100000})),
                                    str(c["video"])], 1, "view settings"),
    ("clip-huge-max-stride", lambda c: ["infer", "--checkpoint", str(clip_changed(c, "m.pt", {"max_stride": 10**9})),
                                        str(c["video"])], 1, "view settings"),
    ("model-width-not-the-weights", lambda c: ["infer", "--checkpoint", str(model_changed(c, "w.pt", width=16)),
                                               str(c["video"])], 1, "its weights have width 8"),
    ("pytorchvideo-scalar-stem", lambda c: ["infer", "--weights", str(pytorchvideo_stem(c, "p0.pt", torch.tensor(1.0))),
                                            str(c["video"])], 1, "stem"),
    ("pytorchvideo-empty-stem", lambda c: ["infer", "--weights",
                                           str(pytorchvideo_stem(c, "p1.pt", torch.zeros(0, 3, 1, 7, 7))),
                                           str(c["video"])], 1, "stem"),
]

# Settings that asked for gigabytes before they were bounded: run under RLIMIT_AS.
MEMORY_CASES = [
    ("model-width-100000", lambda c: ["infer", "--checkpoint", str(model_changed(c, "W.pt", width=100000)),
                                      str(c["video"])], 1, "width 100000"),
    ("model-frames-100000", lambda c: ["infer", "--checkpoint", str(model_changed(c, "F.pt", frames=100000)),
                                       str(c["video"])], 1, "frames 100000"),
    ("model-classes-1e9", lambda c: ["infer", "--checkpoint", str(model_changed(c, "C.pt", num_classes=10**9)),
                                     str(c["video"])], 1, "num_classes"),
]


@pytest.mark.parametrize("make, expected_code, words", cases(CASES))
def test_a_bad_checkpoint_or_run_folder_ends_in_one_line(corpus, capsys, make, expected_code, words):
    ends_in_one_line(corpus, capsys, make, expected_code, words)


@pytest.mark.parametrize("make, expected_code, words", cases(MEMORY_CASES))
def test_a_bad_checkpoint_is_refused_within_bounded_memory(corpus, make, expected_code, words):
    refused_within_memory(corpus, make, expected_code, words)


def test_a_run_folder_in_use_names_the_process_holding_it(corpus, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from sfcli.runlock import lock_run; "
                               "lock_run(sys.argv[1]); print('held', flush=True); sys.stdin.read()", str(run)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(run)
        result = sfcli("train", "--data", str(corpus["synth"]), *TINY, "--out", str(run))
        assert_one_line(result.returncode, result.stderr, 1, f"PID {holder.pid}")
        assert snapshot(run) == before
    finally:
        holder.stdin.close()
        holder.wait()
    holder.wait()
    # The holder ended, so the kernel released its lock: a process may take it now.
    code = "import sys; from sfcli.runlock import lock_run; lock_run(sys.argv[1])"
    taken = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True)
    assert taken.returncode == 0, taken.stderr


def test_a_full_disk_keeps_the_previous_checkpoint_whole(tmp_path):
    """A run's checkpoint that fits, then one that does not, in a process allowed files of 64 KiB."""
    path = tmp_path / "checkpoint.pt"
    code = ("import resource, signal, sys, torch; from pathlib import Path; from sfcli.runs import RunState, save_run; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16,) * 2)\n"
            "save_run(Path(sys.argv[1]), {'w': torch.zeros(100)}, RunState(epoch=1, step=3))\n"
            "try:\n    save_run(Path(sys.argv[1]), {'w': torch.ones(100_000)}, RunState(epoch=2))\n"
            "except Exception as e:\n    print(type(e).__name__, e)")
    message = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                             check=True).stdout
    assert message.startswith(WriteError.__name__) and str(path) in message, message
    assert "the previous checkpoint (epoch 2, step 3) is intact" in message, message
    assert torch.equal(load_checkpoint(path)["w"], torch.zeros(100))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_videos.json", "checkpoint.pt"]  # no temporary file


def test_save_checkpoint_turns_os_errors_into_one_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="is a file, not a folder"):
        save_checkpoint(tmp_path / "file" / "sub" / "c.pt", {})


def test_convert_keeps_a_runs_view_settings(corpus, tmp_path, capsys):
    code, err, _ = run_in_process(["convert", str(corpus["run"]), str(tmp_path / "weights.pt")], capsys)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "weights.pt")["clip"] == load_checkpoint(corpus["run"] / "checkpoint.pt")["clip"]


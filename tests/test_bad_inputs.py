"""A corpus of bad inputs (files, lists, options, checkpoints) made here, each through the real
command line: a non-zero exit, one line on stderr, no traceback, and an existing run folder left
as it was. Cases that would grow memory with the input run in a subprocess under RLIMIT_AS, so
that a regression fails the test instead of the machine."""

import hashlib
import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import sfcli

from sfcli.cli import cli
from sfcli.errors import WriteError
from sfcli.files import load_checkpoint, save_checkpoint
from sfcli.layouts import translate
from sfcli.runlock import LOCK_FILE
from sfcli.videolist import read_video_list

TINY = ["--arch", "slowfast_tiny", "--width", "8", "--crop", "32", "--frames", "2", "--batch-size", "4",
        "--workers", "0", "--views", "1x1", "--epochs", "1"]
HEADER = "label,youtube_id,time_start,time_end,split\n"
MEMORY_LIMIT = 6 << 30  # bytes of address space: a good `sfcli infer` peaks at 3.6 GB of it


@pytest.fixture(scope="module")
def corpus(synth, tmp_path_factory):
    """A finished tiny run, one good video, and a folder for the bad files."""
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    result = sfcli("train", "--data", str(synth), *TINY, "--out", str(run))
    assert result.returncode == 0, result.stderr
    video = sorted((synth / "val").rglob("*.mp4"))[0]
    return {"root": root, "run": run, "video": video, "synth": synth}


def snapshot(run: Path) -> dict:
    """Every file of a run folder and a digest of its bytes (the lock file holds the PID of whoever took it last)."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


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


def write(corpus, name, data: str | bytes):
    path = corpus["root"] / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def infer(corpus, *args):
    return ["infer", "--checkpoint", str(corpus["run"]), "--views", "1x1", *map(str, args)]


def train(corpus, data, *args):
    return ["train", "--data", str(data), *TINY, "--out", str(corpus["run"]), *map(str, args)]


def evaluate(corpus, data):
    return ["eval", "--checkpoint", str(corpus["run"]), "--data", str(data), "--views", "1x1", "--workers", "0"]


def fifo(corpus):
    path = corpus["root"] / "pipe.mp4"
    if not path.exists():
        os.mkfifo(path)
    return path


def symlink(corpus, name, target):
    path = corpus["root"] / name
    if not path.is_symlink():
        path.symlink_to(target)
    return path


def noise_video(corpus, name, num_frames=90):
    """An H.264 mp4 of 32x32 noise at 30 fps with its index (moov) before its frames (mdat), as
    streaming sites write them; written once."""
    import av
    import numpy as np

    path = corpus["root"] / name
    if not path.exists():
        rng = np.random.default_rng(0)
        with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width = stream.height = 32
            stream.pix_fmt = "yuv420p"
            for i in range(num_frames):
                frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 32, 3), np.uint8), format="rgb24")
                for packet in [*stream.encode(frame), *(stream.encode() if i == num_frames - 1 else [])]:
                    container.mux(packet)
    return path


def frames_cut_off(corpus):
    """The 3 s noise video without its last 40% of bytes: the index is whole, the last frames are gone."""
    data = noise_video(corpus, "whole.mp4").read_bytes()
    return write(corpus, "frames-cut-off.mp4", data[: len(data) * 6 // 10])


def frames_zeroed(corpus):
    data = noise_video(corpus, "whole.mp4").read_bytes()
    start = data.index(b"mdat") + 4
    return write(corpus, "zeroed.mp4", data[:start] + bytes(len(data) - start))


def audio_only(corpus):
    import av
    import numpy as np

    path = corpus["root"] / "audio.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


def short_video(corpus, num_frames):
    from conftest import write_video

    return write_video(corpus["root"] / f"short{num_frames}.mp4", num_frames=num_frames, size=(32, 32))


def val_csv_with_a_row_twice(corpus):
    header, first = (corpus["synth"] / "val.csv").read_text().splitlines()[:2]
    return write(corpus, "twice.csv", "\n".join([header, first, first]) + "\n")


def undecodable_list(corpus):
    write(corpus, "undecodable/text.mp4", "not a video\n")
    write(corpus, "undecodable/cut.mp4", corpus["video"].read_bytes()[:2000])
    return write(corpus, "undecodable/list.txt", "text.mp4 0\ncut.mp4 1\n")


# (id, command line made from the corpus, exit code, words the one line must hold)
CASES = [
    # lists
    ("csv-inf-times", lambda c: train(c, write(c, "inf.csv", HEADER + "ring,x,inf,1e400,train\n")), 1,
     "time_start and time_end"),
    ("csv-huge-times", lambda c: evaluate(c, write(c, "huge.csv", HEADER + "ring,x,1e300,1e301,val\n")), 1,
     "time_start and time_end"),
    ("csv-latin-1", lambda c: evaluate(c, write(c, "latin.csv", (HEADER + "caf\xe9,x,0,1,val\n").encode("latin-1"))),
     1, "not UTF-8"),
    ("list-latin-1", lambda c: train(c, write(c, "latin.txt", "caf\xe9.mp4 0\n".encode("latin-1"))), 1, "not UTF-8"),
    ("list-label-too-big", lambda c: train(c, write(c, "big.txt", "a.mp4 1000000000\n")), 1, "label 1000000000"),
    ("list-missing-video", lambda c: evaluate(c, write(c, "missing.txt", "nope.mp4 0\n")), 1, "missing"),
    ("list-neither-format", lambda c: evaluate(c, write(c, "neither.txt", "a,b\n")), 1, "neither"),
    ("eval-nothing-decodes", lambda c: evaluate(c, undecodable_list(c)), 1, "nothing was scored"),
    # options
    ("window-nan", lambda c: infer(c, c["video"], "--window", "nan"), 2, "--window"),
    ("stride-nan", lambda c: infer(c, c["video"], "--window", "1", "--stride", "nan"), 2, "--stride"),
    ("window-inf", lambda c: infer(c, c["video"], "--window", "inf"), 2, "--window"),
    ("seed-negative", lambda c: train(c, c["synth"], "--seed", "-1"), 2, "--seed"),
    ("beta-above-one", lambda c: train(c, c["synth"], "--beta", "3/2"), 2, "beta"),
    ("beta-zero", lambda c: train(c, c["synth"], "--beta", "0"), 2, "beta"),
    ("other-settings-on-the-run", lambda c: train(c, c["synth"], "--seed", "5"), 1, "other settings"),
    ("out-below-a-file", lambda c: ["train", "--data", str(c["synth"]), *TINY, "--out",
                                    str(write(c, "plain-file", "x") / "run")], 1, "is a file, not a folder"),
    ("convert-below-a-file", lambda c: ["convert", str(c["run"]), str(write(c, "plain-file", "x") / "w.pt")], 1,
     "is a file, not a folder"),
    ("convert-over-the-run", lambda c: ["convert", str(c["run"]), str(c["run"] / "checkpoint.pt")], 1,
     "training checkpoint"),
    # videos given to infer
    ("video-missing", lambda c: infer(c, c["root"] / "absent.mp4"), 1, "no such file"),
    ("video-empty", lambda c: infer(c, write(c, "empty.mp4", b"")), 1, "empty file"),
    ("video-text", lambda c: infer(c, write(c, "text.mp4", "hello\n")), 1, "cannot be decoded (not a video file)"),
    ("video-truncated", lambda c: infer(c, write(c, "cut.mp4", c["video"].read_bytes()[:2000])), 1,
     "cannot be decoded (truncated: no index (moov atom) found)"),
    ("video-audio-only", lambda c: infer(c, audio_only(c)), 1, "cannot be decoded (no video stream)"),
    ("video-frames-zeroed", lambda c: infer(c, frames_zeroed(c)), 1, "damaged: its frames do not decode"),
    ("video-fifo", lambda c: infer(c, fifo(c)), 1, "named pipe"),
    ("video-symlink-loop", lambda c: infer(c, symlink(c, "loop.mp4", "loop.mp4")), 1, "symlink loop"),
    ("video-dangling-symlink", lambda c: infer(c, symlink(c, "dangling.mp4", "gone.mp4")), 1, "missing file"),
    ("folder-empty", lambda c: infer(c, write(c, "nothing/.keep", "").parent), 1, "no videos"),
    ("folder-named-like-a-video", lambda c: infer(c, write(c, "x.mp4/.keep", "").parent), 1, "no videos"),
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
    ("list-label-1e7", lambda c: train(c, write(c, "big7.txt", "a.mp4 10000000\n")), 1, "label 10000000"),
]


# Inputs read otherwise than given: exit 0, and one warning line that says how.
WARNING_CASES = [
    ("csv-row-twice", lambda c: [*evaluate(c, val_csv_with_a_row_twice(c)), "--prefix", str(c["synth"])],
     "1 duplicate row (first: line 3) read once"),
    ("list-lines-twice", lambda c: evaluate(c, write(c, "lines-twice.txt", f"{c['video']} 0\n" * 3)),
     "2 duplicate rows (first: line 2) read once"),
    ("list-video-under-two-labels",
     lambda c: evaluate(c, write(c, "two-labels.txt", f"{c['video']} 0\n{c['video']} 1\n")),
     "1 video is listed under a second label (first:"),
    ("skip-missing", lambda c: [*evaluate(c, write(c, "one-gone.txt", f"{c['video']} 0\n{c['root']}/gone.mp4 1\n")),
                                "--skip-missing"],
     "--skip-missing: 1 of the 2 videos listed in"),
    ("video-shorter-than-the-clip", lambda c: infer(c, short_video(c, 8), "--views", "2x1"),
     "short8.mp4: 8 frames, shorter than the 32-frame clip span: its last frame is repeated"),
    ("window-frames-cut-off", lambda c: infer(c, frames_cut_off(c), "--window", "1"),
     "1 of 3 windows cannot be decoded (2.0-3.0 s: truncated: the file ends before its last frames); "
     "the video's labels are those of the other 2"),
    ("window-frames-cut-off-rendered", lambda c: infer(c, frames_cut_off(c), "--window", "1", "--render",
                                                       c["root"] / "rendered.mp4", "--timeline", c["root"] / "t.csv"),
     "1 of 3 windows cannot be decoded"),
]


def run_in_process(args, capsys) -> tuple[int, str, str]:
    """The CLI in this process (a subprocess per case would cost seconds of imports each):
    exit code, stderr, stdout."""
    try:
        cli.main(args, prog_name="sfcli")
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def assert_one_line(code, stderr, expected_code, words):
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert code == expected_code, stderr
    assert lines[0].startswith("sfcli: ") and words in lines[0], lines[0]


@pytest.mark.parametrize("make, expected_code, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_ends_in_one_line(corpus, capsys, make, expected_code, words):
    before = snapshot(corpus["run"])
    args = make(corpus)
    assert_one_line(*run_in_process(args, capsys)[:2], expected_code, words)
    assert snapshot(corpus["run"]) == before


@pytest.mark.parametrize("make, words", [c[1:] for c in WARNING_CASES], ids=[c[0] for c in WARNING_CASES])
def test_input_read_otherwise_than_given_says_so_in_one_line(corpus, capsys, make, words):
    before = snapshot(corpus["run"])
    code, stderr, _ = run_in_process(make(corpus), capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 0 and len(lines) == 1, stderr
    assert lines[0].startswith("sfcli: warning: ") and words in lines[0], lines[0]
    assert snapshot(corpus["run"]) == before


def test_a_video_one_clip_span_long_is_not_short(corpus, capsys):
    """The built-in benchmark's videos are one span long (64 frames for slowfast_tiny's 32 x 2)."""
    code, stderr, _ = run_in_process(infer(corpus, short_video(corpus, 32), short_video(corpus, 31)), capsys)
    assert code == 0 and stderr.splitlines() == [
        f"sfcli: warning: {corpus['root'] / 'short31.mp4'}: 31 frames, shorter than the 32-frame clip span: "
        "its last frame is repeated"]


def video_4k(corpus) -> Path:
    """Ten 3840x2160 frames: kept whole for each of 10x3 views' 160 frames, they were 3.7 GB."""
    import av
    import numpy as np

    path = corpus["root"] / "4k.mp4"
    if path.exists():
        return path
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 3840, 2160, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((2160, 3840, 3), 20 * i, np.uint8), format="rgb24")
            for packet in [*stream.encode(frame), *(stream.encode() if i == 9 else [])]:
                container.mux(packet)
    return path


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_a_4k_video_is_scored_in_memory_that_follows_the_views(corpus, decoder):
    video = video_4k(corpus)
    result = sfcli("infer", "--checkpoint", str(corpus["run"]), "--views", "10x3", "--decoder", decoder, str(video),
                   "--json", preexec_fn=limit_memory)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)[0]["video"] == str(video)


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.parametrize("make, expected_code, words", [c[1:] for c in MEMORY_CASES],
                         ids=[c[0] for c in MEMORY_CASES])
def test_bad_input_is_refused_within_bounded_memory(corpus, make, expected_code, words):
    before = snapshot(corpus["run"])
    result = sfcli(*make(corpus), preexec_fn=limit_memory)
    assert_one_line(result.returncode, result.stderr, expected_code, words)
    assert snapshot(corpus["run"]) == before


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


def test_byte_order_marks_are_not_part_of_the_first_name(synth, tmp_path):
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + (synth / "val.csv").read_bytes())
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"\xef\xbb\xbf" + (synth / "classes.txt").read_bytes())
    videos = read_video_list(csv, prefix=synth, labels=labels)
    assert videos.classes == (synth / "classes.txt").read_text().splitlines()
    assert len(videos.paths) == len((synth / "val.csv").read_text().splitlines()) - 1


def test_videos_in_every_container_ffmpeg_reads_are_found(corpus, tmp_path, capsys):
    import av
    import numpy as np

    for ext, fmt, codec in (("ts", "mpegts", "mpeg4"), ("3gp", "3gp", "mpeg4"), ("flv", "flv", "flv"),
                            ("wmv", "asf", "mpeg4")):
        with av.open(str(tmp_path / f"v.{ext}"), "w", format=fmt) as container:
            stream = container.add_stream(codec, rate=30)
            stream.width = stream.height = 32
            stream.pix_fmt = "yuv420p"
            for i in range(8):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 30 * i, np.uint8), format="rgb24")
                for packet in [*stream.encode(frame), *(stream.encode() if i == 7 else [])]:
                    container.mux(packet)
    code, err, out = run_in_process(infer(corpus, tmp_path, "--json"), capsys)
    assert code == 0, err
    assert sorted(Path(r["video"]).suffix for r in json.loads(out)) == [".3gp", ".flv", ".ts", ".wmv"]


def rotated(path: Path, source: Path) -> Path:
    """`source` with a display matrix of 90 degrees in its track header, as phones record."""
    data = bytearray(source.read_bytes())
    i = data.index(b"tkhd")
    matrix = i + 4 + 4 + (32 if data[i + 4] == 1 else 20) + 16  # past the times, track id, duration, layer...
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(data)
    return path


def test_rotation_metadata_is_applied_by_both_decoders(tmp_path):
    from conftest import write_video

    from sfcli.decode import decode

    video = rotated(tmp_path / "portrait.mp4", write_video(tmp_path / "landscape.mp4", num_frames=4, size=(32, 48)))
    with_decord, with_pyav = (decode(video, lambda num_frames, fps: [0, 3], d) for d in ("decord", "pyav"))
    assert with_decord.shape == with_pyav.shape == (2, 48, 32, 3)
    assert (with_decord.float() - with_pyav.float()).abs().mean() < 2


def test_convert_keeps_a_runs_view_settings(corpus, tmp_path, capsys):
    code, err, _ = run_in_process(["convert", str(corpus["run"]), str(tmp_path / "weights.pt")], capsys)
    assert code == 0, err
    assert load_checkpoint(tmp_path / "weights.pt")["clip"] == load_checkpoint(corpus["run"] / "checkpoint.pt")["clip"]


def test_json_keeps_the_decoders_own_messages_and_the_warnings(corpus, capsys):
    text = write(corpus, "messages/text.mp4", "not a video\n")
    listed = write(corpus, "messages/list.txt", f"{corpus['video']} 0\n{text} 1\n{corpus['video']} 0\n")
    code, stderr, out = run_in_process([*evaluate(corpus, listed), "--json"], capsys)
    assert code == 0 and stderr == ""  # with --json the warnings are in the JSON
    result = json.loads(out)
    (bad,) = result["excluded_videos"]
    assert bad["path"] == str(text) and bad["reason"] == "not a video file"
    assert bad["details"].startswith("decord: Error reading") and "; pyav: " in bad["details"]
    assert result["warnings"] == [f"{listed}: 1 duplicate row (first: line 3) read once"]

    code, stderr, out = run_in_process(infer(corpus, frames_cut_off(corpus), "--window", "1", "--json"), capsys)
    assert code == 0 and stderr == ""
    windows = json.loads(out)[0]["windows"]
    assert [w.get("error") for w in windows] == [None, None, "truncated: the file ends before its last frames"]
    assert windows[2]["predictions"] == [] and "pyav: no frame could be decoded" in windows[2]["details"]


def test_bad_videos_json_keeps_the_decoders_own_messages_across_a_resume(corpus, tmp_path, capsys):
    text = write(corpus, "quarantined/text.mp4", "not a video\n")
    classes = sorted(p.name for p in (corpus["synth"] / "train").iterdir())
    videos = sorted((corpus["synth"] / "train").rglob("*.mp4"))[:15]  # and the text file: 4 batches of 4
    listed = write(corpus, "quarantined/list.txt", "".join(f"{v} {classes.index(v.parent.name)}\n" for v in videos)
                   + f"{text} 0\n")
    args = ["train", "--data", str(listed), *TINY, "--out", str(tmp_path / "run"), "--json"]
    for _ in range(2):  # trained, then read back from its checkpoint
        code, stderr, out = run_in_process(args, capsys)
        assert code == 0, stderr
        (bad,) = json.loads(out)["bad_videos"]
        assert bad["path"] == str(text) and bad["reason"] == "not a video file"
        assert bad["details"].startswith("decord: Error reading") and "; pyav: " in bad["details"]
    assert json.loads((tmp_path / "run" / "bad_videos.json").read_text()) == [bad]


def test_a_decoder_message_with_no_known_meaning_is_shortened_for_people(corpus):
    from sfcli.decode import describe

    path = write(corpus, "unknown.mkv", "x" * 100)  # not an MP4: no boxes to read
    messages = [f"decord: [01:06:07] /src/video/video_reader.cc:151: Check failed: {'x' * 90}",
                f"pyav: [Errno 1414092869] Decoder not found: '{path}'"]
    assert describe(path, messages) == "Check failed: " + "x" * 65 + "…"
    assert describe(path, messages[1:]) == "Decoder not found"

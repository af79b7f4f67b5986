"""Bad video files made here (empty, text, cut short at either end, audio only, a FIFO, symlinks,
a 4K video, rotated, every container FFmpeg reads), through the real command line: each named in
one line with a reason for people, the decoders' own messages kept in the JSON, and the other
videos still scored (tests/badinputs.py: the corpus and the checks)."""

import json
import os
import struct
from pathlib import Path

import pytest
from badinputs import (
    TINY,
    cases,
    ends_in_one_line,
    evaluate,
    infer,
    limit_memory,
    run_in_process,
    warns_in_one_line,
    write,
)
from conftest import sfcli

from sfcli.data import ClipConfig, VideoDataset
from sfcli.framecache import FrameCache
from sfcli.videolist import read_video_list


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


# What PyAV's reading of frames_cut_off() is noted by: it decodes the frames left, and no more.
CUT_SHORT = "fewer frames decode than the 90 its container says: the last decoded frame is repeated"


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


def undecodable_list(corpus):
    write(corpus, "undecodable/text.mp4", "not a video\n")
    write(corpus, "undecodable/cut.mp4", corpus["video"].read_bytes()[:2000])
    return write(corpus, "undecodable/list.txt", "text.mp4 0\ncut.mp4 1\n")


# (id, command line made from the corpus, exit code, words the one line must hold)
VIDEO_CASES = [
    ("eval-nothing-decodes", lambda c: evaluate(c, undecodable_list(c)), 1, "nothing was scored"),
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
]

# Videos read otherwise than they are: exit 0, and one warning line that says how.
VIDEO_WARNING_CASES = [
    ("video-shorter-than-the-clip", lambda c: infer(c, short_video(c, 8), "--views", "2x1"),
     "short8.mp4: 8 frames, shorter than the 32-frame clip span: its last frame is repeated"),
    # PyAV reads a file cut short up to its end: its last clip is filled with the last frame read.
    ("video-fewer-frames-than-its-container-says", lambda c: infer(c, frames_cut_off(c), "--views", "2x1",
                                                                   "--decoder", "pyav"),
     f"frames-cut-off.mp4: {CUT_SHORT}"),
]


@pytest.mark.parametrize("make, expected_code, words", cases(VIDEO_CASES))
def test_a_bad_video_ends_in_one_line(corpus, capsys, make, expected_code, words):
    ends_in_one_line(corpus, capsys, make, expected_code, words)


@pytest.mark.parametrize("make, words", cases(VIDEO_WARNING_CASES))
def test_a_video_read_otherwise_than_it_is_says_so_in_one_line(corpus, capsys, make, words):
    warns_in_one_line(corpus, capsys, make, words)


def test_windows_of_a_file_cut_short_say_which_did_not_decode_and_which_repeat_frames(corpus, capsys):
    """Of the 1 s windows of the noise video cut short, the third has no frame left (named, and the
    video's labels are the other two's) and the second ends in its last frame repeated: two
    warning lines, drawn or not, and the same two in the JSON."""
    video = frames_cut_off(corpus)
    expected = [f"{video}: {CUT_SHORT}",
                f"{video}: 1 of 3 windows cannot be decoded (2.0-3.0 s: truncated: the file ends before its last "
                "frames); the video's labels are those of the other 2"]
    drawn = ["--render", corpus["root"] / "rendered.mp4", "--timeline", corpus["root"] / "t.csv"]
    code, stderr, _ = run_in_process(infer(corpus, video, "--window", "1", *drawn), capsys)
    assert code == 0 and stderr.splitlines() == [f"sfcli: warning: {w}" for w in expected]
    code, stderr, out = run_in_process(infer(corpus, video, "--window", "1", "--json"), capsys)
    assert code == 0 and stderr == "" and json.loads(out)[0]["warnings"] == expected


def test_fewer_frames_than_the_container_says_are_noted_by_eval_and_through_the_frame_cache(corpus, capsys):
    video = frames_cut_off(corpus)
    listed = write(corpus, "cut-short.txt", f"{video} 0\n")
    code, stderr, out = run_in_process([*evaluate(corpus, listed), "--views", "2x1", "--decoder", "pyav", "--json"],
                                       capsys)
    assert code == 0 and json.loads(out)["warnings"] == [f"{video}: {CUT_SHORT}"]
    videos = read_video_list(listed)
    clip = ClipConfig(frames=32, stride=1, test_short=32, test_crop=32, num_clips=2, num_crops=1)  # to the last frame
    cache = FrameCache.build(videos.paths, "pyav", budget_mb=64, workers=0)
    for decoder in ("pyav", cache):
        assert VideoDataset(videos, clip, train=False, decoder=decoder)[0]["notes"] == [CUT_SHORT]


def test_a_video_one_clip_span_long_is_not_short(corpus, capsys):
    """The built-in benchmark's videos are one span long (64 frames for slowfast_tiny's 32 x 2)."""
    code, stderr, _ = run_in_process(infer(corpus, short_video(corpus, 32), short_video(corpus, 31)), capsys)
    assert code == 0 and stderr.splitlines() == [
        f"sfcli: warning: {corpus['root'] / 'short31.mp4'}: 31 frames, shorter than the 32-frame clip span: "
        "its last frame is repeated"]


def test_train_says_once_which_validation_videos_repeat_frames(corpus, tmp_path, capsys):
    """Validated after each of two epochs and tested at the end: the short video's line, once."""
    short = short_video(corpus, 8)
    listed = write(corpus, "val-with-a-short-video.txt", f"{corpus['video']} 0\n{short} 1\n")
    code, stderr, _ = run_in_process(["train", "--data", str(corpus["synth"]), "--val-data", str(listed), *TINY,
                                      "--epochs", "2", "--out", str(tmp_path / "run")], capsys)
    assert code == 0, stderr
    assert [line for line in stderr.splitlines() if "warning" in line] == [
        f"sfcli: warning: {short}: 8 frames, shorter than the 32-frame clip span: its last frame is repeated"]


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

    # infer, where every video fails: exit 1, the one line, and the video in the JSON as eval lists it.
    code, stderr, out = run_in_process(infer(corpus, text, "--json"), capsys)
    assert code == 1 and stderr.splitlines() == [f"sfcli: {text}: cannot be decoded (not a video file)"]
    assert json.loads(out) == [bad]

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

"""`sfcli infer --render --timeline` on a real video: a decodable labelled copy and the windows as CSV."""

import csv
import json

import av
import numpy as np
from conftest import one_line_error, sfcli, write_video
from test_infer import tiny_checkpoint


def test_render_writes_every_frame_with_labels_and_the_timeline_its_windows(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "four.pt", ["walk", "run", "jump", "sit"])
    video = write_video(tmp_path / "in.mp4", num_frames=75, size=(48, 64))  # 2.5 s at 30 fps
    out, timeline = tmp_path / "out.mp4", tmp_path / "timeline.csv"
    result = sfcli("infer", str(video), "--checkpoint", str(checkpoint), "--views", "1x1", "--top-k", "2",
                   "--window", "1", "--render", str(out), "--timeline", str(timeline), "--json")
    assert result.returncode == 0, result.stderr
    (prediction,) = json.loads(result.stdout)
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 75 and frames[0].shape == (48, 64, 3)
    with av.open(str(video)) as container:
        original = next(container.decode(video=0)).to_ndarray(format="rgb24")
    corner = np.abs(frames[0][:8, :24].astype(int) - original[:8, :24]).mean()
    assert corner > 10  # the caption darkens the top-left corner and writes on it
    assert np.abs(frames[0][-8:, -8:].astype(int) - original[-8:, -8:]).mean() < 4  # the rest is the video
    rows = list(csv.DictReader(timeline.open()))
    assert len(rows) == 2 * len(prediction["windows"]) == 2 * 3
    first = prediction["windows"][0]
    assert [(float(r["start"]), float(r["end"]), r["label"], float(r["score"])) for r in rows[:2]] == [
        (first["start"], first["end"], p["label"], p["score"]) for p in first["predictions"]]


def test_render_takes_one_video(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "four.pt", ["a", "b", "c", "d"])
    videos = [str(write_video(tmp_path / f"{i}.mp4", num_frames=8, size=(32, 32))) for i in range(2)]
    result = sfcli("infer", *videos, "--checkpoint", str(checkpoint), "--render", str(tmp_path / "o.mp4"))
    error = one_line_error(result)
    assert "exactly one video" in error

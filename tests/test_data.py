"""The clip loader on real mp4 files decoded by the real decoders."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import frame_number, write_truncated, write_video

from sfcli.data import ClipConfig, VideoDataset, collate
from sfcli.decode import decode
from sfcli.errors import DataError
from sfcli.framecache import FrameCache
from sfcli.presets import create_model
from sfcli.transforms import clip_indices, normalize, three_crops
from sfcli.videolist import VideoList, read_video_list

DECODERS = ["decord", "pyav"]
SMALL = ClipConfig(frames=8, stride=2, crop=32, min_short=40, max_short=48, test_short=40, test_crop=40,
                   num_clips=3, num_crops=3)


def kinetics_csv(path: Path, rows, header="label,youtube_id,time_start,time_end,split"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture
def kinetics(tmp_path):
    """A Kinetics-style dataset: clips in <split>/<label>/ and one flat, labels with spaces."""
    rows = []
    for label, ids in (("riding a bike", ["aaaaaaaaaaa", "bbbbbbbbbbb"]), ("abseiling", ["ccccccccccc"])):
        for k, yid in enumerate(ids):
            rows.append((label, yid, 10 * k, 10 * k + 10, "train"))
            sub = "" if yid == "ccccccccccc" else f"train/{label}/"
            write_video(tmp_path / f"{sub}{yid}_{10 * k:06d}_{10 * k + 10:06d}.mp4")
    return kinetics_csv(tmp_path / "train.csv", rows)


def test_kinetics_csv_labels_and_class_order(kinetics):
    videos = read_video_list(kinetics)
    assert videos.kind == "kinetics-csv"
    assert videos.classes == ["abseiling", "riding a bike"]  # sorted: the order of Kinetics checkpoints
    names = [p.name for p in videos.paths]
    assert names == ["aaaaaaaaaaa_000000_000010.mp4", "bbbbbbbbbbb_000010_000020.mp4", "ccccccccccc_000000_000010.mp4"]
    assert videos.labels == [1, 1, 0]
    assert all(p.is_file() for p in videos.paths)


def test_pyslowfast_list_relative_to_list_or_prefix(tmp_path):
    write_video(tmp_path / "clips" / "x y.mp4")  # a path with a space
    write_video(tmp_path / "clips" / "z.mp4")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.csv").write_text("x y.mp4 1\nz.mp4 0\n")
    with pytest.raises(DataError, match=r"2 of 2 videos .* missing .*resolved against"):
        read_video_list(lists / "train.csv")
    videos = read_video_list(lists / "train.csv", prefix=tmp_path / "clips")
    assert videos.kind == "pyslowfast-list"
    assert videos.labels == [1, 0] and videos.classes == ["0", "1"]
    (lists / "labels.txt").write_text("cat\ndog\n")
    named = read_video_list(lists / "train.csv", prefix=tmp_path / "clips", labels=lists / "labels.txt")
    assert named.classes == ["cat", "dog"]


def test_folder_of_class_folders(tmp_path):
    for name in ("b", "a"):
        write_video(tmp_path / "root" / name / "v.mp4")
    (tmp_path / "root" / "a" / "notes.txt").write_text("not a video")
    videos = read_video_list(tmp_path / "root")
    assert videos.kind == "folder" and videos.classes == ["a", "b"] and videos.labels == [0, 1]


def test_checkpoint_classes_map_labels_and_mismatch_is_an_error(kinetics):
    videos = read_video_list(kinetics, classes=["riding a bike", "abseiling", "other"])
    assert videos.labels == [0, 0, 1]
    with pytest.raises(DataError, match="not among the 1 classes"):
        read_video_list(kinetics, classes=["abseiling"])


def test_malformed_csv_line_names_file_and_line(tmp_path):
    path = kinetics_csv(tmp_path / "bad.csv", [("a", "id", 0, 10, "train"), ("a", "id2", "zero")])
    with pytest.raises(DataError, match=r"bad\.csv, line 3"):
        read_video_list(path)
    (tmp_path / "list.txt").write_text("a.mp4 0\nb.mp4 notanumber\n")
    with pytest.raises(DataError, match=r"list\.txt, line 2"):
        read_video_list(tmp_path / "list.txt")


def test_bad_data_argument(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_video_list(tmp_path / "nope.csv")
    (tmp_path / "weird.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="neither a Kinetics CSV"):
        read_video_list(tmp_path / "weird.csv")


def test_missing_files_reported_together_or_skipped(kinetics):
    for p in read_video_list(kinetics).paths[:2]:
        p.unlink()
    with pytest.raises(DataError, match=r"^2 of 3 videos listed in .* are missing"):
        read_video_list(kinetics)
    assert len(read_video_list(kinetics, skip_missing=True).paths) == 1


@pytest.mark.parametrize("decoder", DECODERS)
def test_clip_frames_follow_the_reference_formula(tmp_path, decoder):
    path = write_video(tmp_path / "v.mp4", num_frames=60)
    for start in (0.0, 0.3, 1.0):
        frames = decode(path, lambda n, fps, start=start: clip_indices(n, fps, 8, 2, start), decoder)
        room = 60 - 16
        expected = np.linspace(room * start, room * start + 15, 8).astype(int).tolist()
        assert [frame_number(f) for f in frames] == expected


@pytest.mark.parametrize("decoder", DECODERS)
def test_30fps_normalisation_same_span_in_seconds(tmp_path, decoder):
    spans = {}
    for fps in (15, 60):
        path = write_video(tmp_path / f"v{fps}.mp4", num_frames=4 * fps, fps=fps)
        frames = decode(path, lambda n, f: clip_indices(n, f, 8, 4, 0.0), decoder)
        numbers = [frame_number(f) for f in frames]
        spans[fps] = (numbers[-1] + 1) / fps  # seconds covered, first frame to last inclusive
    assert spans[15] == pytest.approx(8 * 4 / 30) and spans[60] == pytest.approx(8 * 4 / 30)


def test_short_video_repeats_frames_instead_of_failing(tmp_path):
    path = write_video(tmp_path / "short.mp4", num_frames=5)
    frames = decode(path, lambda n, fps: clip_indices(n, fps, 8, 2, 0.5), "decord")
    # The reference clamps: linspace(0, 15, 8) = 0, 2.1, 4.3, 6.4, ... -> 0, 2, 4, 4, ...
    assert [frame_number(f) for f in frames] == [0, 2, 4, 4, 4, 4, 4, 4]


def test_slow_frames_are_picked_from_the_fast_clip_by_the_reference_formula():
    model = create_model("slowfast_tiny", num_classes=3)  # alpha 8, T 4: 32 Fast frames
    assert model.slow_index.tolist() == np.floor(np.linspace(0, 31, 4)).astype(int).tolist() == [0, 10, 20, 31]
    clip = torch.arange(32.0).view(1, 1, 32, 1, 1).expand(1, 3, 32, 2, 2)
    assert clip.index_select(2, model.slow_index)[0, 0, :, 0, 0].tolist() == [0, 10, 20, 31]


@pytest.mark.parametrize("decoder", DECODERS)
def test_train_and_test_clip_shapes(kinetics, decoder):
    videos = read_video_list(kinetics)
    train = VideoDataset(videos, SMALL, train=True, decoder=decoder, seed=1)
    item = train[0]
    assert item["clip"].shape == (3, 8, 32, 32) and item["clip"].dtype == torch.uint8
    assert item["failures"] == [] and item["label"] == 1
    again = VideoDataset(videos, SMALL, train=True, decoder=decoder, seed=1)[0]
    assert torch.equal(item["clip"], again["clip"])  # randomness comes from (seed, epoch, index)
    test = VideoDataset(videos, SMALL, train=False, decoder=decoder)[2]
    assert test["clip"].shape == (9, 3, 8, 40, 40) and test["error"] is None
    normalized = normalize(test["clip"], SMALL.mean, SMALL.std)
    assert normalized.dtype == torch.float32
    assert torch.allclose(normalized, (test["clip"].float() / 255 - 0.45) / 0.225)


def test_test_views_are_uniform_clips_times_three_crops(tmp_path):
    write_video(tmp_path / "c" / "x" / "v.mp4", num_frames=90, size=(40, 80))
    videos = read_video_list(tmp_path / "c")
    views = VideoDataset(videos, SMALL, train=False)[0]["clip"]
    assert views.shape == (9, 3, 8, 40, 40)  # clip-major: 3 clips x 3 crops
    first_frames = [frame_number(views[v, :, 0]) for v in range(9)]
    # The reference's starts: a window of ceil(2 * 7) = 14 frames leaves 76 free, clip i of 3 starts
    # at 76 * i / 3 = 0, 25.3, 50.7, the first whole frames 0, 26, 51.
    assert first_frames == [0, 0, 0, 26, 26, 26, 51, 51, 51]


def test_three_crops_positions():
    frames = torch.arange(10).view(1, 10).expand(4, 10)  # H 4, W 10
    crops = three_crops(frames, 4)
    assert [c[0].tolist() for c in crops] == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]


@pytest.fixture
def dataset_with_bad_files(tmp_path):
    root = tmp_path / "root"
    good = [write_video(root / "a" / f"good{i}.mp4") for i in range(3)]
    good.append(write_video(root / "b" / "good3.mp4"))
    bad = {
        root / "a" / "zero.mp4": b"",
        root / "b" / "text.mp4": b"this is a text file, not a video\n",
    }
    for path, content in bad.items():
        path.write_bytes(content)
    write_truncated(root / "b" / "truncated.mp4", good[0])
    return root, set(bad) | {root / "b" / "truncated.mp4"}


def test_forked_loader_workers_decode_with_pyav_after_the_parent_did(tmp_path):
    """PyAV 18.1.1's frame.to_ndarray(format=...) keeps one converter per thread; a forked worker
    inherited it with its scaling threads gone and waited on them forever."""
    path = write_video(tmp_path / "v.mp4")
    videos = VideoList([path] * 4, [0] * 4, ["a"], "kinetics-csv", tmp_path / "list.csv")
    dataset = VideoDataset(videos, SMALL, train=True, decoder="pyav")
    assert dataset[0]["clip"].shape == (3, 8, 32, 32)  # decoded in this process first
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate, timeout=60,
                                         multiprocessing_context="fork")
    assert sum(len(batch["label"]) for batch in loader) == 4


@pytest.mark.parametrize("decoder", DECODERS)
def test_train_loader_quarantines_bad_videos(dataset_with_bad_files, decoder):
    root, bad = dataset_with_bad_files
    videos = read_video_list(root)
    dataset = VideoDataset(videos, SMALL, train=True, decoder=decoder)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate)
    seen, failures = [], {}
    for epoch in range(2):
        dataset.set_epoch(epoch)
        for batch in loader:
            assert batch["clip"].shape[1:] == (3, 8, 32, 32)
            seen += batch["index"].tolist()
            for index, reason in batch["failures"]:
                failures.setdefault(videos.paths[index], []).append(reason)
    assert {videos.paths[i] for i in seen}.isdisjoint(bad)
    assert set(failures) == bad  # exactly the bad ones are reported
    assert all(len(reasons) == 1 for reasons in failures.values())  # and never decoded again
    assert len(seen) == 2 * len(videos.paths)  # every bad sample was replaced by a good one


def test_test_loader_excludes_bad_videos(dataset_with_bad_files):
    root, bad = dataset_with_bad_files
    videos = read_video_list(root)
    dataset = VideoDataset(videos, SMALL, train=False)
    batch = collate([dataset[i] for i in range(len(dataset))])
    assert batch["clip"].shape[0] == len(videos.paths) - len(bad)
    assert {videos.paths[i] for i, _ in batch["failures"]} == bad


@pytest.mark.parametrize("decoder", DECODERS)
def test_synth_dataset_reads_end_to_end(tmp_path, decoder):
    import subprocess
    import sys

    out = tmp_path / "s"
    result = subprocess.run([sys.executable, "-m", "sfcli", "synth", str(out), "--classes", "3", "--train-per-class",
                             "2", "--val-per-class", "1", "--size", "64", "--frames", "40", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    videos = read_video_list(out / "train.csv")
    assert videos.kind == "kinetics-csv" and len(videos.paths) == 6 and len(videos.classes) == 3
    train = VideoDataset(videos, SMALL, train=True, decoder=decoder)
    batch = collate([train[i] for i in range(len(train))])
    assert batch["clip"].shape == (6, 3, 8, 32, 32) and batch["failures"] == []
    assert sorted(batch["label"].tolist()) == [0, 0, 1, 1, 2, 2]
    val = read_video_list(out / "val.csv", classes=videos.classes)
    assert len(val.paths) == 3


def test_synth_cli_bad_size_is_one_line_error(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "sfcli", "synth", str(tmp_path / "s"), "--size", "63"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("sfcli: error:")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("decoder", DECODERS)
def test_frame_cache_gives_the_decoders_clips_and_reasons(dataset_with_bad_files, decoder):
    root, bad = dataset_with_bad_files
    videos = read_video_list(root)
    cache = FrameCache.build(videos.paths, decoder, budget_mb=64, workers=1)
    assert set(cache.entries) == set(videos.paths) and cache.nbytes == 4 * 48 * 64 * 80 * 3
    for train in (True, False):
        plain = VideoDataset(videos, SMALL, train=train, decoder=decoder)
        cached = VideoDataset(videos, SMALL, train=train, decoder=cache)
        for epoch in range(2):
            plain.set_epoch(epoch), cached.set_epoch(epoch)
            for i in range(len(videos.paths)):
                a, b = plain[i], cached[i]
                assert a["index"] == b["index"] and a.get("failures") == b.get("failures")
                assert a.get("error") == b.get("error") and (a["clip"] is None) == (b["clip"] is None)
                if a["clip"] is not None:
                    assert torch.equal(a["clip"], b["clip"])
    assert {p for p, e in cache.entries.items() if isinstance(e, str)} == bad
    assert FrameCache.build(videos.paths, decoder, budget_mb=0, workers=0) is None  # over the budget: not kept


def test_a_reason_keeps_the_decoders_messages_out_of_loader_workers_and_the_frame_cache(dataset_with_bad_files):
    root, bad = dataset_with_bad_files
    videos = read_video_list(root)
    cache = FrameCache.build(videos.paths, "auto", budget_mb=64, workers=1)  # decoded in a worker process
    text = root / "b" / "text.mp4"
    assert cache.entries[text] == "not a video file" and cache.entries[text].details.startswith("decord: ")
    assert cache.entries[root / "b" / "truncated.mp4"] == "truncated: no index (moov atom) found"
    failure = VideoDataset(videos, SMALL, train=False, decoder=cache)[videos.paths.index(text)]["error"]
    assert failure == "not a video file" and failure.details == cache.entries[text].details
    assert "; pyav: [Errno" in failure.details


def test_a_video_shorter_than_the_clip_span_is_noted_and_one_exactly_as_long_is_not(tmp_path):
    clip = ClipConfig(frames=32, stride=2, crop=32, test_short=32, test_crop=32, num_clips=2, num_crops=1)
    assert clip.short_video(64, 30) is None and clip.short_video(128, 60) is None
    assert clip.short_video(127, 60) == "127 frames, shorter than the 128-frame clip span: its last frame is repeated"
    for n in (40, 64):
        write_video(tmp_path / "c" / "x" / f"v{n}.mp4", num_frames=n, size=(32, 32))
    videos = read_video_list(tmp_path / "c")
    batch = collate([VideoDataset(videos, clip, train=False)[i] for i in range(2)])
    assert [(videos.paths[i].name, note) for i, note in batch["notes"]] == [
        ("v40.mp4", "40 frames, shorter than the 64-frame clip span: its last frame is repeated")]

"""Named official weights, downloaded from a local HTTP server standing in for the model zoos:
progress, the cache, a damaged file fetched again, offline, and `sfcli infer video.mp4` as written."""

import functools
import http.server
import json
import threading

import pytest
import torch
from conftest import one_line_error, sfcli, write_video
from test_caffe2 import caffe2_blobs, write_caffe2

from sfcli import hub
from sfcli.checkpoint import kinetics400_classes
from sfcli.errors import CheckpointError
from sfcli.presets import PRESETS, create_model


class Zoo:
    """A folder served over HTTP on 127.0.0.1, counting the requests for each file."""

    def __init__(self, root):
        self.root, self.requests = root, []
        zoo = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                zoo.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def put(self, weights: hub.NamedWeights, data: bytes):
        path = self.root / hub.ZOOS[weights.zoo] / weights.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    (tmp_path / "zoo").mkdir()
    served = Zoo(tmp_path / "zoo")
    monkeypatch.setenv(hub.URL_ENV, served.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yield served
    served.server.shutdown()


SLOW = hub.WEIGHTS["slow_8x8_r50_k400"]


def test_a_name_is_downloaded_once_with_progress_and_its_sha256_recorded(zoo, capfd):
    zoo.put(SLOW, b"weights " * 1000)
    path = hub.fetch(SLOW)
    assert path == hub.cache_dir() / SLOW.file and path.read_bytes() == b"weights " * 1000
    assert "100%" in capfd.readouterr().err  # torch.hub's progress bar
    assert (path.parent / (path.name + ".sha256")).read_text().strip() == hub.sha256_of(path)
    assert not list(path.parent.glob("*.partial"))
    assert hub.fetch(SLOW) == path and len(zoo.requests) == 1  # a cache hit asks nothing


def test_a_damaged_cached_file_is_refused_and_fetched_again(zoo, capfd):
    zoo.put(SLOW, b"good weights")
    path = hub.fetch(SLOW)
    path.write_bytes(b"bad weights!")
    assert hub.fetch(SLOW).read_bytes() == b"good weights" and len(zoo.requests) == 2
    assert "does not match the sha256 recorded" in capfd.readouterr().err
    zoo.put(SLOW, b"other weights")  # the server's file is not the one first downloaded
    path.write_bytes(b"bad weights!")
    with pytest.raises(CheckpointError, match="does not match the sha256 recorded at its first download"):
        hub.fetch(SLOW)
    assert not path.exists()


def test_offline_a_name_ends_in_one_sentence_naming_what_to_pass(tmp_path):
    env = {hub.URL_ENV: "http://127.0.0.1:9/", "TORCH_HOME": str(tmp_path / "torch")}
    line = one_line_error(sfcli("infer", str(tmp_path / "v.mp4"), "--weights", "slow_8x8_r50_k400", env=env))
    assert "cannot download slow_8x8_r50_k400" in line and "local copy of SLOWONLY_8x8_R50.pkl" in line


def test_infer_a_video_with_no_option_uses_the_default_network(zoo, tmp_path):
    torch.manual_seed(0)
    default = hub.WEIGHTS[hub.DEFAULT_WEIGHTS]
    write_caffe2(zoo.root / "model.pkl", caffe2_blobs(create_model(default.arch)))
    zoo.put(default, (zoo.root / "model.pkl").read_bytes())
    video = write_video(tmp_path / "v.mp4", num_frames=64)
    env = {hub.URL_ENV: zoo.url, "TORCH_HOME": str(tmp_path / "torch")}
    result = sfcli("infer", str(video), "--views", "1x1", "--top-k", "3", "--json", env=env)
    assert result.returncode == 0, result.stderr
    (prediction,) = json.loads(result.stdout)
    labels = [p["label"] for p in prediction["predictions"]]
    assert len(labels) == 3 and set(labels) <= set(kinetics400_classes())
    assert zoo.requests == ["/" + hub.ZOOS[default.zoo] + default.file]


def test_models_lists_presets_and_named_weights(tmp_path):
    result = sfcli("models", "--json", env={"TORCH_HOME": str(tmp_path / "torch")})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    presets = {p["arch"]: p for p in out["presets"]}
    assert presets.keys() == PRESETS.keys()
    assert presets["slowfast_4x16_r50"]["params"] == 34_480_216 and presets["slowfast_4x16_r50"]["gflops"] == 36.1
    assert presets["slowfast_8x8_r50"]["slow"] == "8x8" and presets["slowfast_8x8_r50"]["fast"] == "32x2"
    weights = {w["name"]: w for w in out["weights"]}
    assert weights.keys() == hub.WEIGHTS.keys() and weights["slowfast_8x8_r50_k400"]["top1"] == 77.0
    assert weights["slowfast_8x8_r50_k400"]["url"].startswith("https://dl.fbaipublicfiles.com/pyslowfast/")
    assert not any(w["cached"] for w in out["weights"])

"""`sfcli ablate`: every study through the one train/eval loop, its files, resumable sweeps."""

import csv
import json
from fractions import Fraction

import pytest
import torch
from conftest import one_line_error, sfcli

from sfcli import ablate
from sfcli.checkpoint import save_model
from sfcli.errors import TrainingError
from sfcli.finetune import read_shared_init
from sfcli.model import SlowFast
from sfcli.presets import build_config, create_model

SMALL = ["--arch", "slowfast_tiny", "--crop", "32", "--batch-size", "4", "--workers", "0", "--views", "1x1",
         "--epochs", "1"]


def run_study(synth, out, study, *extra):
    result = sfcli("ablate", study, "--data", str(synth), *SMALL, *extra, "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("study, keys", [
    ("beta", ["1/4", "1/8"]),
    ("lateral", ["none", "ttoc-sum", "ttoc-concat", "t-sample", "t-conv"]),
    ("fast-input", ["rgb", "half", "gray", "timediff"]),
])
def test_each_study_trains_its_variants_and_writes_json_csv_and_plot(synth, tmp_path, study, keys):
    extra = ["--betas", "1/4,1/8"] if study == "beta" else []
    result = run_study(synth, tmp_path, study, *extra)
    assert [r["key"] for r in result["rows"]] == keys
    for row in result["rows"]:
        assert 0 <= row["top1"] <= row["top5"] <= 100 and row["params"] > 0 and row["gflops"] > 0
        assert row["paper_top1"] == ablate.PAPER[(study, row["key"])][0]
        assert (tmp_path / row["key"] / "checkpoint.pt").is_file()
    files = result["files"]
    assert json.loads(open(files["json"]).read())["rows"] == result["rows"]
    with open(files["csv"]) as f:
        assert [r["variant"] for r in csv.DictReader(f)] == [r["variant"] for r in result["rows"]]
    assert open(files["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    if study == "beta":  # a wider Fast pathway costs more
        assert result["rows"][0]["gflops"] > result["rows"][1]["gflops"]
    if study == "fast-input":
        half = next(r for r in result["rows"] if r["key"] == "half")
        assert Fraction(half["config"]["beta"]) == Fraction(1, 4) and half["config"]["fusion_ratio"] == 1


def test_a_second_run_trains_nothing_and_prints_the_same_table(synth, tmp_path):
    args = ["ablate", "pathways", "--data", str(synth), *SMALL, "--out", str(tmp_path)]
    first = sfcli(*args)
    assert first.returncode == 0, first.stderr
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/checkpoint.pt")}
    assert len(stamps) == 3
    second = sfcli(*args)
    assert second.returncode == 0, second.stderr
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert "Slow-only" in first.stdout and first.stdout == second.stdout
    assert "epoch 1:" in first.stderr and "epoch 1:" not in second.stderr


def test_default_betas_keep_only_those_that_leave_the_fast_pathway_channels():
    kept, dropped = ablate.default_betas(build_config("slowfast_tiny"))  # width 16
    assert kept == [Fraction(1, 4), Fraction(1, 6), Fraction(1, 8), Fraction(1, 12), Fraction(1, 16)]
    assert dropped == [Fraction(1, 32)]
    assert ablate.default_betas(build_config("slowfast_4x16_r50"))[1] == []
    assert all(build_config("slowfast_tiny", beta=b).fast_width >= 1 for b in kept)


def test_bad_study_options_are_one_line_errors(synth, tmp_path):
    line = one_line_error(sfcli("ablate", "beta", "--data", str(synth), *SMALL, "--betas", "1/4,abc",
                                "--out", str(tmp_path)))
    assert "--betas" in line
    line = one_line_error(sfcli("ablate", "pathways", "--data", str(synth / "train.csv"), *SMALL,
                                "--out", str(tmp_path)))
    assert "--val-data" in line


# ----------------------------------------------------------------------------- --init


def random_weights(path):
    """A 7-class slowfast_tiny of width 8 whose every tensor is random, so that none equals a
    fresh network's; saved as an sfcli file. Returns its state dict."""
    model = create_model("slowfast_tiny", num_classes=7, width=8)
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.uniform_(0.5, 1.5)
    save_model(model, path, [f"c{i}" for i in range(7)], "slowfast_tiny")
    return model.state_dict()


FITS = {  # what each pathways variant of the 4-class data loads from the 7-class SlowFast
    "slow": "77 of 87 tensors loaded where name and shape fit; re-initialised: slow res2 (2 of 20), "
            "slow res3 (2 of 20), slow res4 (2 of 20), slow res5 (2 of 20), fc",  # no lateral channels in
    "fast": "85 of 87 tensors loaded where name and shape fit; re-initialised: fc",
    "slowfast": "190 of 192 tensors loaded where name and shape fit; re-initialised: fc",
}


def test_init_loads_each_variant_the_tensors_that_fit_and_initialises_the_rest(tmp_path):
    source = random_weights(tmp_path / "w.pt")
    shared = read_shared_init(tmp_path / "w.pt", 4)
    assert shared.arch == "slowfast_tiny" and shared.config.width == 8 and shared.config.num_classes == 4
    variants = ablate.variants("pathways") + ablate.variants("beta", [Fraction(1, 4)])
    for variant in variants:
        cfg = shared.config.replace(**variant.overrides, num_classes=4)
        tuning = shared.for_run(tmp_path / variant.key, cfg)
        torch.manual_seed(0)
        fresh = {k: v.clone() for k, v in SlowFast(cfg).state_dict().items()}
        torch.manual_seed(0)
        model = SlowFast(cfg)
        tuning.prepare(model)
        for k, v in model.state_dict().items():
            fits = k in source and source[k].shape == v.shape
            assert torch.equal(v, source[k] if fits else fresh[k]), k
            assert fits or "num_batches" in k or not torch.equal(v, source[k]), k
        if variant.key in FITS:
            assert tuning.fitted == FITS[variant.key]
    assert tuning.fitted.startswith("77 of 192 tensors loaded") and "fast stem, fast res2," in tuning.fitted
    assert tuning.source.head == "re-initialised"  # the classifier's shape follows the data and the network
    with pytest.raises(TrainingError, match="no tensor of .* has the name and shape"):
        shared.for_run(tmp_path / "wide", build_config("slowfast_tiny", width=32, num_classes=4))
    for classes, fc in (([f"c{i}" for i in range(7)], "none"), ([f"new{i}" for i in range(7)], "fc")):
        same = read_shared_init(tmp_path / "w.pt", 7, classes=classes)
        tuning = same.for_run(tmp_path / "same", same.config)
        assert tuning.fitted.endswith(f"re-initialised: {fc}")  # a classifier of other names is new


def test_ablate_init_starts_every_variant_from_the_weights_and_resumes(synth, tmp_path):
    random_weights(tmp_path / "w.pt")
    args = ["ablate", "pathways", "--data", str(synth), *SMALL, "--init", str(tmp_path / "w.pt"),
            "--out", str(tmp_path / "out")]
    first = sfcli(*args)
    assert first.returncode == 0, first.stderr
    assert [line for line in first.stderr.splitlines() if "tensors loaded" in line] == list(FITS.values())
    unwrapped = " ".join(first.stderr.split())  # lines longer than the console's 160 columns wrap
    assert unwrapped.count("base lr 0.000625, warm-up 0.2 epochs") == 3  # the --init defaults
    assert "from " + str(tmp_path / "w.pt") in first.stdout
    config = json.loads((tmp_path / "out" / "slow" / "config.json").read_text())
    assert config["model"]["width"] == 8 and config["finetune"]["init"]["head"] == "re-initialised"
    second = sfcli(*args)  # every variant done: the weights are read, not trained from
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout and "epoch 1:" not in second.stderr
    random_weights(tmp_path / "w.pt")  # other random values
    line = one_line_error(sfcli(*args))
    assert "changed since this run started" in line


def test_builtin_dataset_is_written_once(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(ablate, "BUILTIN_SYNTH", {"seed": 0, "classes": 2, "train_per_class": 1,
                                                  "val_per_class": 1, "size": (32, 32), "frames": 8})
    root = ablate.builtin_dataset()
    assert root.parent == tmp_path / "sfcli" and (root / "train.csv").is_file() and (root / "val.csv").is_file()
    stamp = (root / "train.csv").stat().st_mtime_ns
    assert ablate.builtin_dataset() == root and (root / "train.csv").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "sfcli").iterdir()] == [root.name]  # no partial folder left


def test_pathways_show_the_papers_ordering_on_a_small_fast_setting(tmp_path):
    """Two shapes (told apart by the Slow pathway) and two motions (only the Fast pathway sees
    them): SlowFast must beat both single pathways. 80x80 videos, T = 2, 12 short epochs."""
    from sfcli.synth import write_dataset

    data = tmp_path / "data"
    write_dataset(data, classes=["ring", "plus sign", "jittering", "rising"], train_per_class=40, val_per_class=10,
                  size=(80, 80), frames=32)
    result = sfcli("ablate", "pathways", "--data", str(data), "--arch", "slowfast_tiny", "--frames", "2",
                   "--epochs", "12", "--batch-size", "8", "--views", "1x1", "--workers", "1",
                   "--out", str(tmp_path / "out"), "--json", env={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr
    top1 = {r["key"]: r["top1"] for r in json.loads(result.stdout)["rows"]}
    # Measured here: Slow-only 42.5, Fast-only 52.5, SlowFast 65.0 (40 test videos).
    assert top1["slowfast"] >= top1["slow"] + 10 and top1["slowfast"] >= top1["fast"] + 5, top1

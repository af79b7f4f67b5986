"""Every script in examples/ runs as written (at tiny sizes) and prints what it promises."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_score_video_prints_five_labels_that_sum_to_one_and_each_window(tmp_path):
    out = run_example("score_video.py", cwd=tmp_path).splitlines()
    assert out[0].endswith("2.0 s at 30 fps")
    labels = [line.split() for line in out[1:] if "-" not in line.split()[0]]
    scores = [float(parts[-1]) for parts in labels]
    assert len(scores) == 2 and abs(sum(scores) - 1) < 2e-3  # two classes: top-5 is both
    assert [line.split(":")[0].strip() for line in out if " s:" in line] == ["0.0- 1.0 s", "1.0- 2.0 s"]


def test_train_then_read_the_run_folder(tmp_path):
    trained = run_example("train_synthetic.py", "--epochs", "2", "--per-class", "4", "--crop", "32",
                          "--out", "runs/ex", "--data", "data/ex", cwd=tmp_path)
    assert trained.count("epoch ") == 2 and "test top-1" in trained
    assert (tmp_path / "runs/ex/checkpoint.pt").is_file() and (tmp_path / "data/ex/train.csv").is_file()
    read = run_example("read_metrics.py", "runs/ex", cwd=tmp_path).splitlines()
    assert read[0] == "slowfast_tiny: 4 classes, 2 of 2 epochs"
    assert [line.split()[:2] for line in read[1:3]] == [["epoch", "1"], ["epoch", "2"]]
    assert read[-1].startswith("final test: top-1") and "over 16 videos" in read[-1]

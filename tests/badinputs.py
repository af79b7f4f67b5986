"""What the bad-input tests share (test_bad_videos, test_bad_lists_and_options, test_bad_checkpoints):
command lines made from the corpus (the `corpus` fixture of conftest.py), and the checks that each
ends in one line on stderr, no traceback, and an existing run folder left as it was. Cases that
would grow memory with the input run in a subprocess under RLIMIT_AS, so that a regression fails
the test instead of the machine."""

import hashlib
import resource
from pathlib import Path

import pytest
from conftest import sfcli

from sfcli.cli import cli
from sfcli.runlock import LOCK_FILE

TINY = ["--arch", "slowfast_tiny", "--width", "8", "--crop", "32", "--frames", "2", "--batch-size", "4",
        "--workers", "0", "--views", "1x1", "--epochs", "1"]
HEADER = "label,youtube_id,time_start,time_end,split\n"
MEMORY_LIMIT = 6 << 30  # bytes of address space: a good `sfcli infer` peaks at 3.6 GB of it


def snapshot(run: Path) -> dict:
    """Every file of a run folder and a digest of its bytes (the lock file holds the PID of whoever took it last)."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


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


def cases(table):
    """pytest parameters of a table of (id, command line made from the corpus, what it ends in...)."""
    return [pytest.param(*case[1:], id=case[0]) for case in table]


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


def ends_in_one_line(corpus, capsys, make, expected_code, words):
    """The command line `make(corpus)` exits with expected_code and one line holding `words`."""
    before = snapshot(corpus["run"])
    assert_one_line(*run_in_process(make(corpus), capsys)[:2], expected_code, words)
    assert snapshot(corpus["run"]) == before


def warns_in_one_line(corpus, capsys, make, words):
    """Inputs read otherwise than given: exit 0, and one warning line holding `words` that says how."""
    before = snapshot(corpus["run"])
    code, stderr, _ = run_in_process(make(corpus), capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 0 and len(lines) == 1, stderr
    assert lines[0].startswith("sfcli: warning: ") and words in lines[0], lines[0]
    assert snapshot(corpus["run"]) == before


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def refused_within_memory(corpus, make, expected_code, words):
    """As ends_in_one_line, in a subprocess under MEMORY_LIMIT."""
    before = snapshot(corpus["run"])
    result = sfcli(*make(corpus), preexec_fn=limit_memory)
    assert_one_line(result.returncode, result.stderr, expected_code, words)
    assert snapshot(corpus["run"]) == before

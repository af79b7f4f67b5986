"""Bad data lists (Kinetics CSVs, PySlowFast lists) and command-line options made here, through
the real command line: a non-zero exit and one line on stderr naming the file or option, or, for
a list read otherwise than written (duplicate rows, --skip-missing), one warning line
(tests/badinputs.py: the corpus and the checks)."""

import pytest
from badinputs import (
    HEADER,
    cases,
    ends_in_one_line,
    evaluate,
    infer,
    refused_within_memory,
    train,
    warns_in_one_line,
    write,
)

from sfcli.videolist import read_video_list


def val_csv_with_a_row_twice(corpus):
    header, first = (corpus["synth"] / "val.csv").read_text().splitlines()[:2]
    return write(corpus, "twice.csv", "\n".join([header, first, first]) + "\n")


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
    ("val-data-missing", lambda c: train(c, c["synth"], "--val-data", str(c["root"] / "no-val.csv")), 1,
     "the video list or folder"),
    ("list-neither-format", lambda c: evaluate(c, write(c, "neither.txt", "a,b\n")), 1, "neither"),
    # options
    ("window-nan", lambda c: infer(c, c["video"], "--window", "nan"), 2, "--window"),
    ("stride-nan", lambda c: infer(c, c["video"], "--window", "1", "--stride", "nan"), 2, "--stride"),
    ("window-inf", lambda c: infer(c, c["video"], "--window", "inf"), 2, "--window"),
    ("seed-negative", lambda c: train(c, c["synth"], "--seed", "-1"), 2, "--seed"),
    ("beta-above-one", lambda c: train(c, c["synth"], "--beta", "3/2"), 2, "beta"),
    ("beta-zero", lambda c: train(c, c["synth"], "--beta", "0"), 2, "beta"),
    ("lr-negative", lambda c: train(c, c["synth"], "--lr", "-1"), 2, "--lr"),
    ("lr-zero", lambda c: train(c, c["synth"], "--lr", "0"), 2, "--lr"),
]

# A list that asked for gigabytes before labels were bounded: run under RLIMIT_AS.
MEMORY_CASES = [
    ("list-label-1e7", lambda c: train(c, write(c, "big7.txt", "a.mp4 10000000\n")), 1, "label 10000000"),
]

# Lists read otherwise than written: exit 0, and one warning line that says how.
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
]


@pytest.mark.parametrize("make, expected_code, words", cases(CASES))
def test_a_bad_list_or_option_ends_in_one_line(corpus, capsys, make, expected_code, words):
    ends_in_one_line(corpus, capsys, make, expected_code, words)


@pytest.mark.parametrize("make, expected_code, words", cases(MEMORY_CASES))
def test_a_bad_list_is_refused_within_bounded_memory(corpus, make, expected_code, words):
    refused_within_memory(corpus, make, expected_code, words)


@pytest.mark.parametrize("make, words", cases(WARNING_CASES))
def test_a_list_read_otherwise_than_written_says_so_in_one_line(corpus, capsys, make, words):
    warns_in_one_line(corpus, capsys, make, words)


def test_byte_order_marks_are_not_part_of_the_first_name(synth, tmp_path):
    csv = tmp_path / "bom.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + (synth / "val.csv").read_bytes())
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"\xef\xbb\xbf" + (synth / "classes.txt").read_bytes())
    videos = read_video_list(csv, prefix=synth, labels=labels)
    assert videos.classes == (synth / "classes.txt").read_text().splitlines()
    assert len(videos.paths) == len((synth / "val.csv").read_text().splitlines()) - 1


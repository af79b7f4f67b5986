"""Dataset lists users already have: the official Kinetics annotation CSV, PySlowFast `path label`
lists and a folder of class folders, read into one VideoList; and labels files of class names."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from sfcli.errors import DataError

# What FFmpeg (decord's and PyAV's) reads; a file named otherwise can still be given directly.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                    ".3gp", ".flv", ".wmv", ".ogv")
KINETICS_HEADER = ("label", "youtube_id", "time_start", "time_end")
MULTI_LABEL_HEADER = ("path", "labels")  # a multi-label CSV: one video per row, its labels joined by ";"
LABEL_SEPARATOR = ";"
# Kinetics clips are cut at whole seconds of a YouTube video; no video is a million seconds long.
MAX_SECONDS = 10**6
# Far more than any video dataset has; a bigger label is a typo, and would build a classifier that size.
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class VideoList:
    paths: list[Path]
    labels: list  # class indices; for a multi-label list, tuples of 0/1 per class
    classes: list[str]
    kind: str  # "kinetics-csv", "pyslowfast-list", "multi-label-csv" or "folder"
    source: Path
    warnings: tuple[str, ...] = ()  # what was read otherwise than listed (duplicates, --skip-missing), for the CLI

    @property
    def multi_label(self) -> bool:
        return self.kind == "multi-label-csv"


def read_text(path: Path) -> str:
    """A list file's text: UTF-8, with the byte-order mark spreadsheets write dropped."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte 0x{err.object[err.start]:02x}); "
                        f"save the file as UTF-8") from None
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror or err})") from None


def read_labels_file(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist")
    names = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not names:
        raise DataError(f"labels file {path} is empty")
    return names


def detect_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    if not path.is_file():
        raise DataError(f"the video list or folder {path} does not exist")
    first = next(iter(read_text(path).splitlines()), "").strip()
    if not first:
        raise DataError(f"{path} is empty")
    if tuple(c.strip() for c in first.split(",")[:4]) == KINETICS_HEADER:
        return "kinetics-csv"
    if tuple(c.strip() for c in first.split(",")) == MULTI_LABEL_HEADER:
        return "multi-label-csv"
    if "," not in first and len(first.rsplit(" ", 1)) == 2:
        return "pyslowfast-list"
    raise DataError(
        f"{path} is neither a Kinetics CSV (header label,youtube_id,time_start,time_end,split), a multi-label "
        f"CSV (header path,labels) nor a PySlowFast list ('path label' per line)"
    )


def _index_videos(root: Path) -> dict[str, list[Path]]:
    """Video files under root (three levels deep), by file stem: Kinetics clips live in
    root/<label>/, root/<split>/<label>/ or flat."""
    found: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if len(Path(dirpath).relative_to(root).parts) >= 3:
            dirnames.clear()
        for name in filenames:
            if name.lower().endswith(VIDEO_EXTENSIONS):
                found.setdefault(os.path.splitext(name)[0], []).append(Path(dirpath) / name)
    return found


def _seconds(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and 0 <= value < MAX_SECONDS else None


def _read_kinetics_csv(path: Path, root: Path):
    rows = []
    reader = csv.reader(read_text(path).splitlines())
    header = [c.strip() for c in next(reader)]
    for lineno, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 4:
            raise DataError(f"{path}, line {lineno}: expected {len(header)} columns ({','.join(header)}), "
                            f"got {len(row)}")
        start, end = _seconds(row[2]), _seconds(row[3])
        if start is None or end is None:
            raise DataError(f"{path}, line {lineno}: time_start and time_end must be seconds from 0 to "
                            f"{MAX_SECONDS:,}, got {row[2]!r}, {row[3]!r}")
        rows.append((row[0].strip(), row[1].strip(), start, end, row[4].strip() if len(row) > 4 else "", lineno))
    index = _index_videos(root)
    entries = []
    for label, youtube_id, start, end, split, lineno in rows:
        stem = f"{youtube_id}_{start:06d}_{end:06d}"
        candidates = index.get(stem, [])
        # Prefer the clip in its own label folder where several share a name.
        best = next((p for p in candidates if p.parent.name == label), candidates[0] if candidates else None)
        entries.append((best or root / split / label / f"{stem}.mp4", label, lineno))
    return entries


def _read_pyslowfast_list(path: Path, root: Path):
    entries = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().rsplit(" ", 1)  # paths may hold spaces; the label is last
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}, line {lineno}: expected 'path label' with an integer label, got {line.strip()!r}")
        if not 0 <= int(parts[1]) < MAX_CLASSES:
            raise DataError(f"{path}, line {lineno}: label {parts[1]} is outside 0 to {MAX_CLASSES - 1:,} "
                            f"(labels count classes from 0)")
        entries.append((root / parts[0], int(parts[1]), lineno))
    return entries


def _read_multi_label_csv(path: Path, root: Path):
    """Rows of (path, labels joined by ';'); entries carry the tuple of label names."""
    entries = []
    reader = csv.reader(read_text(path).splitlines())
    next(reader)
    for lineno, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        names = tuple(n.strip() for n in row[1].split(LABEL_SEPARATOR) if n.strip()) if len(row) == 2 else ()
        if not names:
            raise DataError(f"{path}, line {lineno}: expected a path and its labels separated by "
                            f"'{LABEL_SEPARATOR}', got {','.join(row)!r}")
        entries.append((root / row[0].strip(), names, lineno))
    return entries


def _read_folder(root: Path):
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders (expected {root}/<class name>/<video>)")
    entries = []
    for name in classes:
        for dirpath, _, filenames in os.walk(root / name):
            entries += [(Path(dirpath) / f, name, None) for f in sorted(filenames)
                        if f.lower().endswith(VIDEO_EXTENSIONS)]
    return entries


def _read_once(entries, data: Path) -> tuple[list, list[str]]:
    """(path, label) of each (path, label, line) entry, a row listed again dropped; and warnings
    that say how many were, and which videos are listed under more than one label (kept, as listed)."""
    seen, kept, again, labels_of, relabelled = set(), [], [], {}, []
    for path, label, line in entries:
        if (path, label) in seen:
            again.append(line)
            continue
        seen.add((path, label))
        kept.append((path, label))
        if labels_of.setdefault(path, label) != label:
            relabelled.append((path, line))
    warnings = []
    if again:
        rows = "row" if len(again) == 1 else "rows"
        warnings.append(f"{data}: {len(again)} duplicate {rows} (first: line {again[0]}) read once")
    if relabelled:
        path, line = relabelled[0]
        videos = "video is" if len(relabelled) == 1 else "videos are"
        warnings.append(f"{data}: {len(relabelled)} {videos} listed under a second label (first: {path} at line "
                        f"{line}); each row is kept as listed")
    return kept, warnings


def read_video_list(data, prefix=None, labels=None, classes=None, skip_missing: bool = False) -> VideoList:
    """Read a Kinetics CSV, a PySlowFast list or a class-folder tree.

    Relative paths resolve against the list's folder, or `prefix`. Class names come from `classes`
    (a checkpoint's), else a labels file, else the label column / folder names sorted (the order
    of Kinetics checkpoints). Missing files are reported together, or dropped with skip_missing;
    a row listed again is read once. The list's `warnings` say what was dropped.
    """
    data = Path(data)
    kind = detect_kind(data)
    root = Path(prefix) if prefix else (data if kind == "folder" else data.parent)
    if kind == "kinetics-csv":
        entries = _read_kinetics_csv(data, root)
    elif kind == "pyslowfast-list":
        entries = _read_pyslowfast_list(data, root)
    elif kind == "multi-label-csv":
        entries = _read_multi_label_csv(data, root)
    else:
        entries = _read_folder(data)
    if not entries:
        raise DataError(f"{data} lists no videos")
    entries, warnings = _read_once(entries, data)

    if classes is None and labels is not None:
        classes = read_labels_file(labels)
    if kind == "pyslowfast-list":
        top = max(label for _, label in entries)
        classes = list(classes) if classes is not None else [str(i) for i in range(top + 1)]
        bad = [label for _, label in entries if not 0 <= label < len(classes)]
        if bad:
            raise DataError(f"{data} has label {bad[0]} but there are only {len(classes)} classes")
        label_ids = [label for _, label in entries]
    else:
        names = [set(label) if kind == "multi-label-csv" else {label} for _, label in entries]
        classes = list(classes) if classes is not None else sorted(set().union(*names))
        lookup = {name: i for i, name in enumerate(classes)}
        unknown = sorted({label for labels in names for label in labels if label not in lookup})
        if unknown:
            raise DataError(
                f"{data} has {len(unknown)} label(s) not among the {len(classes)} classes, e.g. {unknown[0]!r}"
            )
        if kind == "multi-label-csv":
            label_ids = [tuple(int(name in labels) for name in classes) for labels in names]
        else:
            label_ids = [lookup[label] for _, label in entries]

    paths = [Path(p) for p, _ in entries]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if missing and not skip_missing:
        shown = ", ".join(str(paths[i]) for i in missing[:3])
        raise DataError(
            f"{len(missing)} of {len(paths)} videos listed in {data} are missing (paths resolved against "
            f"{root}; use --prefix to change that, or --skip-missing to drop them): {shown}"
            + (", ..." if len(missing) > 3 else "")
        )
    if missing:
        keep = sorted(set(range(len(paths))) - set(missing))
        if not keep:
            raise DataError(f"every video listed in {data} is missing")
        warnings.append(f"--skip-missing: {len(missing)} of the {len(paths)} videos listed in {data} were not "
                        f"found and are left out (first: {paths[missing[0]]})")
        paths, label_ids = [paths[i] for i in keep], [label_ids[i] for i in keep]
    return VideoList(paths, label_ids, classes, kind, data, tuple(warnings))

"""One process at a time in a run folder: an OS file lock (flock) on RUN/.lock, which the kernel
releases when the process ends, however it ends, so that a killed run never leaves it stale."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sfcli.errors import TrainingError
from sfcli.files import write_error

LOCK_FILE = ".lock"

_held: dict[Path, int] = {}  # run folder -> descriptor holding its lock, for this process's life


def lock_run(run) -> None:
    """Take `run`'s lock for the rest of this process (taking it again is a no-op), or raise
    TrainingError naming the process that holds it. Creates the folder."""
    run = Path(run)
    key = run.resolve()
    if key in _held:
        return
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise write_error(run / LOCK_FILE, err) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise TrainingError(f"{run} is in use by another sfcli process (PID {holder}); wait for it to end, "
                            f"or pass another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = fd

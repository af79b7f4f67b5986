"""Files written so that a kill at any instant leaves the previous version whole, and checkpoints read
without running any code they carry."""

from __future__ import annotations

import errno
import io
import os
import pickletools
import re
import uuid
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import torch

from sfcli.errors import CheckpointError, WriteError


def write_atomic(path, data: str | bytes) -> Path:
    """Replace `path` with `data` (text is written as UTF-8) in one step; WriteError if it cannot."""
    content = data.encode("utf-8") if isinstance(data, str) else data
    return _replace(Path(path), lambda f: f.write(content))


def save_checkpoint(path, payload: dict) -> Path:
    """torch.save `payload` to `path` atomically; WriteError where the file system refuses (full,
    read-only, no permission), any other failure a CheckpointError; the previous file is kept."""
    path = Path(path)
    try:
        return _replace(path, lambda f: torch.save(payload, f))
    except WriteError:
        raise
    except Exception as err:
        raise CheckpointError(f"could not write checkpoint {path}: {_first_line(err)}") from err


class _Recorded:
    """A file whose write errors are kept: torch.save reports a failed write as "unexpected pos",
    losing the reason (a full disk, a file-size limit)."""

    def __init__(self, f: BinaryIO):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self):
        self.f.flush()


def _replace(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a temporary file in the same folder, flush and fsync it, os.replace it onto `path`,
    then fsync the folder so that the rename itself is durable."""
    folder = path.parent
    tmp = folder / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # 0o666 less the umask, as for any new file (a NamedTemporaryFile would be 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            recorded = _Recorded(f)
            try:
                write(recorded)
            except RuntimeError as err:
                raise (recorded.error or err) from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _remove(tmp)
        raise write_error(path, err) from None
    except BaseException:
        _remove(tmp)
        raise
    _fsync_folder(folder)
    return path


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:  # its folder was never made
        pass


KEPT = "the previous version of the file"


def write_error(path: Path, err: OSError) -> WriteError:
    """One sentence for a file the system would not let us write."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return WriteError(f"no space left on {_mount_point(path.parent)} while writing {path}", KEPT)
    if err.errno == errno.EFBIG:
        return WriteError(f"the file-size limit (ulimit -f) was reached while writing {path}", KEPT)
    blocker = next((p for p in [path.parent, *path.parent.parents] if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        return WriteError(f"cannot write {path}: {blocker} is a file, not a folder")
    if err.errno == errno.EROFS:
        return WriteError(f"cannot write {path}: {_mount_point(path.parent)} is mounted read-only")
    if err.errno in (errno.EACCES, errno.EPERM):
        return WriteError(f"cannot write {path}: permission denied in {blocker or path.parent}")
    return WriteError(f"cannot write {path} ({err.strerror or _first_line(err)})")


def _mount_point(folder: Path) -> Path:
    """The mount point `folder` lies on, named as the device in messages (e.g. /tmp)."""
    folder = next((p for p in [folder, *folder.parents] if p.exists()), Path("/")).resolve()
    device = folder.stat().st_dev
    while folder.parent != folder and folder.parent.stat().st_dev == device:
        folder = folder.parent
    return folder


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows, where folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path) -> dict:
    """torch.load(path, map_location="cpu", weights_only=True); every way this can fail becomes a
    CheckpointError with one sentence naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err})") from None
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is an empty file (0 bytes), not a PyTorch checkpoint")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise next to our own error
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err})") from None
    except Exception as err:
        code = _code_in(err, path)
        if code:
            raise CheckpointError(
                f"checkpoint {path} was refused because it carries code ({code}), and sfcli only loads weights"
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint, or it is truncated or damaged") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a dict of weights")
    return dict(obj)


def _code_in(err: Exception, path: Path) -> str | None:
    """The callable or class that made weights_only refuse a file, or None if it failed for
    another reason (not a checkpoint, damaged). Torch names it in its message ("GLOBAL
    posix.system"); a plain pickle that torch cannot even start on is scanned for the same
    opcodes, without running it. Only files that are a zip (torch's format) or a binary pickle
    count: torch reads a text file starting with "c" as a GLOBAL opcode too."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
    except OSError:
        return None
    is_zip = zipfile.is_zipfile(io.BytesIO(data)) or zipfile.is_zipfile(path)
    if not (is_zip or data.startswith(b"\x80")):  # protocol >= 2 pickles start with PROTO
        return None
    match = re.search(r"GLOBAL ([\w.]+)", str(err))
    if match:
        return match.group(1)
    if is_zip:
        return None
    try:
        strings = []
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings = (strings + [arg])[-2:]
            elif opcode.name == "GLOBAL":
                return str(arg).replace(" ", ".")
            elif opcode.name == "STACK_GLOBAL":
                return ".".join(strings) if len(strings) == 2 else "a global"
            elif opcode.name in ("INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"):
                return "an object constructor"
    except Exception:
        pass
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

"""Named official weights: the Kinetics-400 SlowFast and Slow networks that PySlowFast's and
PyTorchVideo's model zoos publish, downloaded once into torch.hub's cache
($TORCH_HOME/hub/checkpoints) and checked against the sha256 recorded at that first download."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

from sfcli.errors import CheckpointError
from sfcli.files import write_atomic

BASE_URL = "https://dl.fbaipublicfiles.com/"
URL_ENV = "SFCLI_WEIGHTS_URL"  # another base URL (a mirror, or a local server in the tests)
ZOOS = {"PySlowFast": "pyslowfast/model_zoo/kinetics400/", "PyTorchVideo": "pytorchvideo/model_zoo/kinetics/"}
DEFAULT_WEIGHTS = "slowfast_8x8_r50_k400"  # what `sfcli infer video.mp4` runs without --weights


@dataclass(frozen=True)
class NamedWeights:
    """One published network: its file in its zoo, the preset it is, and the Kinetics-400 top-1
    (30 views) the zoo reports for it."""

    name: str
    arch: str
    zoo: str  # a key of ZOOS
    file: str
    top1: float
    classes: str = "kinetics400"

    @property
    def url(self) -> str:
        base = os.environ.get(URL_ENV) or BASE_URL
        return base.rstrip("/") + "/" + ZOOS[self.zoo] + self.file

    def to_json(self) -> dict:
        return {"name": self.name, "arch": self.arch, "zoo": self.zoo, "url": self.url, "top1": self.top1,
                "classes": self.classes, "cached": (cache_dir() / self.file).is_file()}


# PySlowFast's Caffe2 files are the paper's own models; PyTorchVideo's are their re-trainings.
WEIGHTS = {w.name: w for w in (
    NamedWeights("slowfast_4x16_r50_k400", "slowfast_4x16_r50", "PySlowFast", "SLOWFAST_4x16_R50.pkl", 75.6),
    NamedWeights("slowfast_8x8_r50_k400", "slowfast_8x8_r50", "PySlowFast", "SLOWFAST_8x8_R50.pkl", 77.0),
    NamedWeights("slow_4x16_r50_k400", "slow_4x16_r50", "PySlowFast", "SLOWONLY_4x16_R50.pkl", 72.7),
    NamedWeights("slow_8x8_r50_k400", "slow_8x8_r50", "PySlowFast", "SLOWONLY_8x8_R50.pkl", 74.8),
    NamedWeights("slowfast_4x16_r50_k400_ptv", "slowfast_4x16_r50", "PyTorchVideo", "SLOWFAST_4x16_R50.pyth", 75.34),
    NamedWeights("slowfast_8x8_r50_k400_ptv", "slowfast_8x8_r50", "PyTorchVideo", "SLOWFAST_8x8_R50.pyth", 76.94),
    NamedWeights("slowfast_8x8_r101_k400", "slowfast_8x8_r101", "PyTorchVideo", "SLOWFAST_8x8_R101.pyth", 77.90),
    NamedWeights("slowfast_16x8_r101_k400", "slowfast_16x8_r101", "PyTorchVideo", "SLOWFAST_16x8_R101_50_50.pyth",
                 78.70),
)}


def named(path) -> NamedWeights | None:
    """The named weights `path` stands for: a registry name that is not also a file or folder."""
    text = str(path)
    return WEIGHTS.get(text) if text in WEIGHTS and not Path(text).exists() else None


def cache_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(weights: NamedWeights, progress: bool = True) -> Path:
    """The cached file of `weights`, downloaded first if it is not there (with torch.hub's
    progress bar, into a temporary file moved into place when complete). Its sha256 is recorded
    beside it at the first download; a cached file that no longer matches is fetched again, and a
    download that does not match is refused."""
    import torch.hub

    path = cache_dir() / weights.file
    record = path.with_name(path.name + ".sha256")
    recorded = record.read_text().strip() if record.is_file() else None
    if path.is_file():
        digest = sha256_of(path)
        if recorded in (None, digest):
            if recorded is None:
                write_atomic(record, digest + "\n")
            return path
        print(f"sfcli: {path} does not match the sha256 recorded at its first download: fetching it again",
              file=sys.stderr)
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(weights.url, str(path), progress=progress)
    except (URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
        raise CheckpointError(f"cannot download {weights.name} from {weights.url} ({reason}); without a network, "
                              f"pass the path of a local copy of {weights.file} (or of any other weights) to "
                              f"--weights, --checkpoint or --init instead") from None
    digest = sha256_of(path)
    if recorded is not None and digest != recorded:
        path.unlink()
        raise CheckpointError(f"the download of {weights.name} from {weights.url} does not match the sha256 recorded "
                              f"at its first download ({recorded[:12]}); the server's file changed or was damaged")
    write_atomic(record, digest + "\n")
    return path

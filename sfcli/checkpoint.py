"""Checkpoints: sfcli's own format, saved atomically, and the layouts users already have.

sfcli's format is a dict::

    {"format": "sfcli", "version": 1, "arch": str, "model_config": ModelConfig.to_dict(),
     "classes": [str, ...], "model": state_dict, ...}

to which training code may add its own keys (optimizer state, step, epoch, RNG states as tensors
or ints: files are read with ``weights_only=True``, which refuses anything that carries code,
numpy arrays included).

Foreign layouts that are read, and can be written for tests:

- PySlowFast ``.pyth``: ``{"model_state": {...}, "epoch", "optimizer_state", "cfg"}`` with keys
  ``s1.pathway{p}_stem.{conv,bn}``, ``s{i}_fuse.{conv_f2s,bn}``,
  ``s{k}.pathway{p}_res{j}.{branch1,branch1_bn,branch2.{a,a_bn,b,b_bn,c,c_bn}}``,
  ``s{k}.pathway{p}_nonlocal{j}.{conv_theta,conv_phi,conv_g,conv_out,norm|bn}``,
  ``head.projection``.
- PyTorchVideo (``pytorchvideo.models.hub.slowfast_r50`` / ``slowfast_r101``):
  ``blocks.0.multipathway_blocks.{p}.{conv,norm}``,
  ``blocks.{i}.multipathway_fusion.{conv_fast_to_slow,norm}``,
  ``blocks.{k}.multipathway_blocks.{p}.res_blocks.{j}.{branch1_conv,branch1_norm,branch2.{conv_a,norm_a,...}}``,
  ``blocks.6.proj``; the dict may be wrapped under ``model_state`` (or ``state_dict``) and its
  keys prefixed with ``model.`` (or ``module.``).

Pathway 0 is Slow, 1 is Fast, in both. PySlowFast's names are the hub every mapping goes
through: sfcli <-> PySlowFast <-> PyTorchVideo.
"""

from __future__ import annotations

import io
import os
import pickletools
import re
import uuid
import warnings
import zipfile
from collections.abc import Mapping
from fractions import Fraction
from importlib import resources
from pathlib import Path

import torch

from sfcli.model import STAGE_BLOCKS, ConfigError, ModelConfig, SlowFast, count_params
from sfcli.presets import PRESETS
from sfcli.errors import CheckpointError

FORMAT = "sfcli"
VERSION = 1
FORMATS = ("sfcli", "pyslowfast", "pytorchvideo")


# ----------------------------------------------------------------------------- save and load


def save_checkpoint(path, payload: dict) -> Path:
    """Write `payload` with torch.save so that a kill at any instant leaves the previous file
    intact: write a temporary file in the same folder, flush and fsync it, os.replace it onto
    `path`, then fsync the folder so the rename itself is durable."""
    path = Path(path)
    folder = path.parent
    tmp = folder / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # 0o666 less the umask, as for any new file (a NamedTemporaryFile would be 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, Exception):
            raise CheckpointError(f"could not write checkpoint {path}: {_first_line(err)}") from err
        raise
    _fsync_folder(folder)
    return path


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


# ----------------------------------------------------------------------------- format detection

_SFCLI_KEY = re.compile(r"^(?:(?:slow|fast)\.(?:stem|stages)\.|laterals\.\d+\.|fc\.(?:weight|bias)$)")
_PYSLOWFAST_KEY = re.compile(r"^(?:s[1-5]\.pathway\d_|s[1-5]_fuse\.|head\.projection\.)")
_PYTORCHVIDEO_KEY = re.compile(r"^blocks\.\d+\.(?:multipathway_blocks|multipathway_fusion|proj)\.")
_LAYOUT_KEYS = {"sfcli": _SFCLI_KEY, "pyslowfast": _PYSLOWFAST_KEY, "pytorchvideo": _PYTORCHVIDEO_KEY}
# A layout counts only with its stem: `fc.weight` alone is any classifier (torchvision's ResNet).
_STEM_KEYS = {"sfcli": re.compile(r"^(?:slow|fast)\.stem\.0\.0\.weight$"),
              "pyslowfast": re.compile(r"^s1\.pathway\d_stem\.conv\.weight$"),
              "pytorchvideo": re.compile(r"^blocks\.0\.multipathway_blocks\.\d\.conv\.weight$")}
_WRAPPERS = ("model_state", "state_dict", "model")
_PREFIXES = ("module.", "model.")


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip_prefixes(sd: dict) -> dict:
    """Drop a `module.` (DataParallel) or `model.` (a wrapping LightningModule) prefix shared by
    every key, as often as it is there."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def _layout(sd: Mapping) -> str | None:
    counts = {name: sum(1 for k in sd if pattern.match(k)) if any(_STEM_KEYS[name].match(k) for k in sd) else 0
              for name, pattern in _LAYOUT_KEYS.items()}
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def unwrap(state, source: str = "the checkpoint") -> tuple[str, dict]:
    """The format of a loaded checkpoint and its state dict in that format's own key layout,
    with wrappers (`model_state`, `state_dict`) and key prefixes (`model.`, `module.`) removed."""
    if isinstance(state, Mapping) and state.get("format") == FORMAT:
        weights = state.get("model")
        if not _is_state_dict(weights):
            raise CheckpointError(f"{source} is an sfcli checkpoint without weights (no 'model' state dict)")
        return "sfcli", dict(weights)
    candidates = []
    if isinstance(state, Mapping):
        candidates = [state[w] for w in _WRAPPERS if isinstance(state.get(w), Mapping)] + [state]
    for candidate in candidates:
        if not _is_state_dict(candidate):
            continue
        sd = _strip_prefixes(dict(candidate))
        layout = _layout(sd)
        if layout:
            return layout, sd
    raise CheckpointError(
        f"{source} is not a SlowFast checkpoint sfcli can read: expected sfcli's format, a PySlowFast "
        f".pyth (s1.pathway0_stem...) or a PyTorchVideo state dict (blocks.0.multipathway_blocks...)"
    )


def detect_format(state, source: str = "the checkpoint") -> str:
    """"sfcli", "pyslowfast" or "pytorchvideo" for a loaded checkpoint. A bare state dict in
    sfcli's own key layout counts as "sfcli"; anything else raises CheckpointError."""
    return unwrap(state, source)[0]


# ----------------------------------------------------------------------------- key mapping
# Suffixes within one module, sfcli <-> PySlowFast <-> PyTorchVideo.
_STEM = (("stem.0.0", "conv", "conv"), ("stem.0.1", "bn", "norm"))
_FUSE = (("conv.0", "conv_f2s", "conv_fast_to_slow"), ("conv.1", "bn", "norm"))
_BLOCK = (
    ("branch2.0.0", "branch2.a", "branch2.conv_a"), ("branch2.0.1", "branch2.a_bn", "branch2.norm_a"),
    ("branch2.1.0", "branch2.b", "branch2.conv_b"), ("branch2.1.1", "branch2.b_bn", "branch2.norm_b"),
    ("branch2.2.0", "branch2.c", "branch2.conv_c"), ("branch2.2.1", "branch2.c_bn", "branch2.norm_c"),
    ("branch1.0", "branch1", "branch1_conv"), ("branch1.1", "branch1_bn", "branch1_norm"),
)
# PyTorchVideo's SlowFast has no non-local blocks; older PySlowFast names the BN `bn`.
_NONLOCAL = (("theta", "conv_theta"), ("phi", "conv_phi"), ("g", "conv_g"), ("out.0", "conv_out"),
             ("out.1", "norm"), ("out.1", "bn"))
_PATHWAYS = {"slow": 0, "fast": 1}
_PATHWAY_NAMES = {0: "slow", 1: "fast"}


def _sub(table, name: str, src: int, dst: int) -> str | None:
    """Translate the module part of `name` (everything before the parameter name) by `table`."""
    module, _, param = name.rpartition(".")
    for row in table:
        if row[src] == module:
            return f"{row[dst]}.{param}"
    return None


def sfcli_to_pyslowfast(sd: Mapping) -> dict:
    """sfcli's keys to PySlowFast's; keys it does not know are kept as they are."""
    # Non-local blocks sit between bottlenecks in sfcli's stage Sequentials: number the blocks.
    positions: dict[tuple[str, str, int], tuple[str, int]] = {}
    stage_key = re.compile(r"^(slow|fast)\.stages\.(\d+)\.(\d+)\.(.+)$")
    entries: dict[tuple[str, str], dict[int, str]] = {}
    for k in sd:
        m = stage_key.match(k)
        if m:
            kind = "nonlocal" if re.match(r"^(theta|phi|g|out)\.", m.group(4)) else "res"
            entries.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = kind
    for (pathway, stage), kinds in entries.items():
        block = -1
        for index in sorted(kinds):
            block += kinds[index] == "res"
            positions[(pathway, stage, index)] = (kinds[index], max(block, 0))
    out = {}
    for k, v in sd.items():
        out[_sfcli_key_to_pyslowfast(k, positions, stage_key)] = v
    return out


def _sfcli_key_to_pyslowfast(k: str, positions, stage_key) -> str:
    if k.startswith("fc."):
        return "head.projection." + k[3:]
    m = re.match(r"^(slow|fast)\.(stem\.0\.[01]\.\w+)$", k)
    if m:
        sub = _sub(_STEM, m.group(2), 0, 1)
        return f"s1.pathway{_PATHWAYS[m.group(1)]}_stem.{sub}" if sub else k
    m = re.match(r"^laterals\.(\d+)\.(.+)$", k)
    if m:
        sub = _sub(_FUSE, m.group(2), 0, 1)
        return f"s{int(m.group(1)) + 1}_fuse.{sub}" if sub else k
    m = stage_key.match(k)
    if m:
        pathway, stage, index, rest = m.groups()
        kind, block = positions[(pathway, stage, int(index))]
        prefix = f"s{int(stage) + 2}.pathway{_PATHWAYS[pathway]}_{kind}{block}"
        sub = _sub(_BLOCK if kind == "res" else _NONLOCAL, rest, 0, 1)
        return f"{prefix}.{sub}" if sub else k
    return k


def pyslowfast_to_sfcli(sd: Mapping) -> dict:
    """PySlowFast's keys to sfcli's; keys it does not know are kept as they are."""
    block_key = re.compile(r"^s(\d)\.pathway(\d)_(res|nonlocal)(\d+)\.(.+)$")
    # sfcli's Sequential index of each block: bottlenecks in order, each followed by its non-local.
    found: dict[tuple[int, int], set[tuple[int, int]]] = {}
    for k in sd:
        m = block_key.match(k)
        if m:
            found.setdefault((int(m.group(1)), int(m.group(2))), set()).add(
                (int(m.group(4)), m.group(3) == "nonlocal"))
    index = {}
    for stage_pathway, blocks in found.items():
        for position, block in enumerate(sorted(blocks)):
            index[(*stage_pathway, *block)] = position
    out = {}
    for k, v in sd.items():
        new = k
        if k.startswith("head.projection."):
            new = "fc." + k[len("head.projection."):]
        elif m := re.match(r"^s1\.pathway(\d)_stem\.(.+)$", k):
            sub = _sub(_STEM, m.group(2), 1, 0)
            if sub and int(m.group(1)) in _PATHWAY_NAMES:
                new = f"{_PATHWAY_NAMES[int(m.group(1))]}.{sub}"
        elif m := re.match(r"^s(\d)_fuse\.(.+)$", k):
            sub = _sub(_FUSE, m.group(2), 1, 0)
            if sub:
                new = f"laterals.{int(m.group(1)) - 1}.{sub}"
        elif (m := block_key.match(k)) and int(m.group(2)) in _PATHWAY_NAMES:
            stage, pathway, kind, block, rest = m.groups()
            stage, pathway, block = int(stage), int(pathway), int(block)
            sub = _sub(_BLOCK if kind == "res" else _NONLOCAL, rest, 1, 0)
            if sub:
                position = index[(stage, pathway, block, kind == "nonlocal")]
                new = f"{_PATHWAY_NAMES[pathway]}.stages.{stage - 2}.{position}.{sub}"
        out[new] = v
    return out


def pyslowfast_to_pytorchvideo(sd: Mapping, head_block: int = 6) -> dict:
    """PySlowFast's keys to PyTorchVideo's (the mapping of slowfast.md); keys it does not know
    are kept as they are. Non-local blocks have no place in PyTorchVideo's SlowFast."""
    out = {}
    for k, v in sd.items():
        new = k
        if k.startswith("head.projection."):
            new = f"blocks.{head_block}.proj." + k[len("head.projection."):]
        elif m := re.match(r"^s1\.pathway(\d)_stem\.(.+)$", k):
            sub = _sub(_STEM, m.group(2), 1, 2)
            new = f"blocks.0.multipathway_blocks.{m.group(1)}.{sub}" if sub else k
        elif m := re.match(r"^s(\d)_fuse\.(.+)$", k):
            sub = _sub(_FUSE, m.group(2), 1, 2)
            new = f"blocks.{int(m.group(1)) - 1}.multipathway_fusion.{sub}" if sub else k
        elif m := re.match(r"^s(\d)\.pathway(\d)_res(\d+)\.(.+)$", k):
            sub = _sub(_BLOCK, m.group(4), 1, 2)
            if sub:
                new = f"blocks.{int(m.group(1)) - 1}.multipathway_blocks.{m.group(2)}.res_blocks.{m.group(3)}.{sub}"
        elif re.match(r"^s\d\.pathway\d_nonlocal\d+\.", k):
            raise CheckpointError("PyTorchVideo's SlowFast has no non-local blocks, so this network cannot be "
                                  "written in its layout")
        out[new] = v
    return out


def pytorchvideo_to_pyslowfast(sd: Mapping) -> dict:
    """PyTorchVideo's keys to PySlowFast's; keys it does not know are kept as they are."""
    out = {}
    for k, v in sd.items():
        new = k
        if m := re.match(r"^blocks\.\d+\.proj\.(\w+)$", k):
            new = f"head.projection.{m.group(1)}"
        elif m := re.match(r"^blocks\.0\.multipathway_blocks\.(\d)\.(.+)$", k):
            sub = _sub(_STEM, m.group(2), 2, 1)
            new = f"s1.pathway{m.group(1)}_stem.{sub}" if sub else k
        elif m := re.match(r"^blocks\.(\d)\.multipathway_fusion\.(.+)$", k):
            sub = _sub(_FUSE, m.group(2), 2, 1)
            new = f"s{int(m.group(1)) + 1}_fuse.{sub}" if sub else k
        elif m := re.match(r"^blocks\.(\d)\.multipathway_blocks\.(\d)\.res_blocks\.(\d+)\.(.+)$", k):
            sub = _sub(_BLOCK, m.group(4), 2, 1)
            new = f"s{int(m.group(1)) + 1}.pathway{m.group(2)}_res{m.group(3)}.{sub}" if sub else k
        out[new] = v
    return out


def sfcli_to_pytorchvideo(sd: Mapping) -> dict:
    return pyslowfast_to_pytorchvideo(sfcli_to_pyslowfast(sd))


def pytorchvideo_to_sfcli(sd: Mapping) -> dict:
    return pyslowfast_to_sfcli(pytorchvideo_to_pyslowfast(sd))


def to_sfcli(sd: Mapping, layout: str) -> dict:
    """A state dict in `layout` ("sfcli", "pyslowfast", "pytorchvideo") in sfcli's key layout."""
    return {"sfcli": dict, "pyslowfast": pyslowfast_to_sfcli, "pytorchvideo": pytorchvideo_to_sfcli}[layout](sd)


def from_sfcli(sd: Mapping, layout: str) -> dict:
    """An sfcli state dict in another key layout (the inverse of `to_sfcli`)."""
    return {"sfcli": dict, "pyslowfast": sfcli_to_pyslowfast, "pytorchvideo": sfcli_to_pytorchvideo}[layout](sd)


# ----------------------------------------------------------------------------- config inference
# Fields of ModelConfig the weights decide; T (frames), tau and, for T-conv laterals, alpha do
# not show in them and come from the preset (or from a PySlowFast checkpoint's own cfg).
STRUCTURAL = ("pathway", "depth", "width", "beta", "lateral", "fusion_kernel", "fusion_ratio", "fast_input",
              "temporal_res4", "nonlocal_res4", "alpha", "num_classes")


def infer_fields(sd: Mapping) -> dict:
    """What an sfcli-layout state dict tells about its network: {field: value}, or {field: tuple
    of values} where the weights fit several (gray vs timediff Fast input, none vs ttoc-sum
    laterals). Fields the weights do not show are left out.

    - pathway: which of `slow.` / `fast.` exist; width: Slow stem channels (Fast's for Fast-only);
      num_classes: rows of the fc weight.
    - depth: blocks per stage, looked up in model.STAGE_BLOCKS (res4 tells 50 from 101).
    - beta: Fast stem / Slow stem channels, as 1/n where n = Slow/Fast and every stage agrees.
    - lateral: T-conv where lateral convs exist (fusion_kernel: their temporal kernel,
      fusion_ratio: out / in channels); otherwise from the extra input channels of Slow's res2.
    - temporal_res4: how many leading res4 blocks have a temporal kernel (None: all);
      nonlocal_res4: the res4 blocks followed by a non-local block.
    """
    fields: dict = {}
    shape = {k: tuple(v.shape) for k, v in sd.items()}
    present = [p for p in ("slow", "fast") if f"{p}.stem.0.0.weight" in shape]
    if not present:
        raise CheckpointError("the weights have no stem (no slow.stem or fast.stem), so the network cannot be inferred")
    fields["pathway"] = "slowfast" if len(present) == 2 else present[0]
    main = present[0]
    if "fc.weight" in shape:
        fields["num_classes"] = shape["fc.weight"][0]

    def blocks(pathway, stage):
        return sorted({int(m.group(1)) for k in shape
                       if (m := re.match(rf"^{pathway}\.stages\.{stage}\.(\d+)\.branch2\.0\.0\.weight$", k))})

    stage_indices = [blocks(main, s) for s in range(4)]
    counts = tuple(len(b) for b in stage_indices)
    depth = next((d for d, c in STAGE_BLOCKS.items() if c == counts), None)
    if depth is None and stage_indices[2]:
        depth = next((d for d, c in STAGE_BLOCKS.items() if c[2] == counts[2]), None)
    if depth is not None:
        fields["depth"] = depth

    stem_out = {p: shape[f"{p}.stem.0.0.weight"][0] for p in present}
    if main == "slow":
        fields["width"] = stem_out["slow"]
    if fields["pathway"] == "slowfast":
        slow_w, fast_w = stem_out["slow"], stem_out["fast"]
        fields["beta"] = Fraction(fast_w, slow_w)
        n = round(slow_w / fast_w) if fast_w else 0
        if n >= 1:
            outs = [shape.get(f"fast.stages.{s}.0.branch2.2.0.weight", (None,))[0] for s in range(4)]
            if all(o is None or o == (slow_w * 4 * 2**s) // n for s, o in enumerate(outs)) and fast_w == slow_w // n:
                fields["beta"] = Fraction(1, n)
        if "laterals.0.conv.0.weight" in shape:
            c_out, c_in, k = shape["laterals.0.conv.0.weight"][:3]
            fields.update(lateral="t-conv", fusion_kernel=k, fusion_ratio=max(c_out // c_in, 1))
        elif "slow.stages.0.0.branch2.0.0.weight" in shape:
            extra = shape["slow.stages.0.0.branch2.0.0.weight"][1] - slow_w
            if extra == 0:
                fields["lateral"] = ("none", "ttoc-sum")
            elif extra == fast_w:
                fields["lateral"] = "t-sample"
            elif fast_w and extra % fast_w == 0:
                fields.update(lateral="ttoc-concat", alpha=extra // fast_w)
    if "fast" in present:
        fields["fast_input"] = ("gray", "timediff") if shape["fast.stem.0.0.weight"][1] == 1 else ("rgb", "half")
    if main == "slow" and stage_indices[2]:
        temporal = [shape[f"slow.stages.2.{i}.branch2.0.0.weight"][2] > 1 for i in stage_indices[2]]
        leading = next((i for i, t in enumerate(temporal) if not t), len(temporal))
        if not any(temporal[leading:]):
            fields["temporal_res4"] = None if leading == len(temporal) else leading
        nonlocal_after = sorted({int(m.group(1)) for k in shape
                                 if (m := re.match(r"^slow\.stages\.2\.(\d+)\.theta\.weight$", k))})
        # A non-local block at Sequential index i follows bottleneck (i - non-locals before it - 1).
        fields["nonlocal_res4"] = tuple(i - n - 1 for n, i in enumerate(nonlocal_after))
    return fields


def _fits(value, preset_value) -> bool:
    return preset_value in value if isinstance(value, tuple) and not _is_field_tuple(value) else preset_value == value


def _is_field_tuple(value) -> bool:
    """nonlocal_res4 is itself a tuple of ints; candidate sets are tuples of strings."""
    return all(isinstance(v, int) for v in value)


def _pick(value):
    return value[0] if isinstance(value, tuple) and not _is_field_tuple(value) else value


def _choose_preset(fields: dict) -> str:
    """The preset that agrees with the most inferred fields (pathway and depth count most);
    ties go to the 8x8 presets (PySlowFast's and PyTorchVideo's zoo models), then PRESETS order:
    R50 with fusion kernel 7 -> slowfast_8x8_r50, R50 with 5 -> slowfast_4x16_r50, R101 ->
    slowfast_8x8_r101 (16x8 with six temporal res4 blocks, _nl with non-local blocks)."""
    weights = {"pathway": 100, "depth": 10}

    def score(item):
        position, (name, preset) = item
        agree = sum(weights.get(f, 1) for f, v in fields.items() if _fits(v, getattr(preset, f)))
        return (-agree, "8x8" not in name, position)

    return min(enumerate(PRESETS.items()), key=score)[1][0]


def infer_config(state_dict: Mapping, arch: str | None = None, hints: dict | None = None,
                 **overrides) -> tuple[str, ModelConfig]:
    """(arch, config) for an sfcli-layout state dict that came without a config.

    The weights decide the structure (see `infer_fields`); the preset decides what they cannot
    show: frames T, tau, alpha of T-conv laterals, dropout. Without `arch` the closest preset is
    chosen (`_choose_preset`); `hints` (from a PySlowFast cfg) may then set alpha, frames, tau.
    With `arch`, a structural field where the preset disagrees with the weights is a
    CheckpointError naming both, unless `overrides` sets it; num_classes always follows the
    weights unless overridden. `overrides` (None values ignored) win over everything."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    fields = infer_fields(state_dict)
    explicit = arch is not None
    if arch is None:
        arch = _choose_preset(fields)
    elif arch not in PRESETS:
        raise CheckpointError(f"unknown architecture {arch!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[arch]
    values = {}
    conflicts = []
    for name, value in fields.items():
        if name in overrides:
            continue
        current = getattr(preset, name)
        if _fits(value, current):
            continue
        if explicit and name != "num_classes":
            conflicts.append(f"{name} {_show(_pick(value))} (preset: {_show(current)})")
        values[name] = _pick(value)
    if conflicts:
        raise CheckpointError(f"the weights do not fit preset {arch}: they have {', '.join(conflicts)}; "
                              f"leave out the architecture to infer it, or pick a matching preset")
    if not explicit and hints:
        values.update({k: v for k, v in hints.items() if k not in overrides})
    try:
        return arch, ModelConfig.from_dict({**preset.to_dict(), **values, **overrides})
    except ConfigError as err:
        raise CheckpointError(f"the inferred network is not valid: {err}") from None


def _show(value) -> str:
    return str(value) if not isinstance(value, tuple) else "(" + ", ".join(map(str, value)) + ")"


def pyslowfast_cfg_hints(cfg_text) -> dict:
    """alpha, frames and tau from the YAML dump PySlowFast stores under "cfg": DATA.NUM_FRAMES
    is the Fast-rate clip, DATA.SAMPLING_RATE the Fast stride. Only the few scalars needed are
    read, line by line; anything unexpected gives {}."""
    if not isinstance(cfg_text, str):
        return {}
    values, section = {}, None
    for line in cfg_text.splitlines():
        if m := re.match(r"^([A-Z_]+):\s*$", line):
            section = m.group(1)
        elif (m := re.match(r"^  ([A-Z_]+):\s*(\S+)\s*$", line)) and section:
            values[f"{section}.{m.group(1)}"] = m.group(2)
    try:
        frames, rate = int(values["DATA.NUM_FRAMES"]), int(values["DATA.SAMPLING_RATE"])
        arch = values.get("MODEL.ARCH", "slowfast").strip("'\"")
        alpha = int(values.get("SLOWFAST.ALPHA", 8)) if arch == "slowfast" else 1
    except (KeyError, ValueError):
        return {}
    if alpha < 1 or frames % alpha:
        return {}
    return {"alpha": alpha, "frames": frames // alpha, "tau": rate * alpha}


# ----------------------------------------------------------------------------- loading weights


def load_weights(model: torch.nn.Module, state_dict: Mapping, source: str | None = None) -> None:
    """model.load_state_dict(state_dict) with strict checking, but a mismatch is a CheckpointError
    of one sentence plus lists of missing keys, unexpected keys and shape mismatches. BN
    `num_batches_tracked` counters absent from old checkpoints are filled with zeros."""
    own = model.state_dict()
    state = dict(state_dict)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros_like(v)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = []
    for k, v in state.items():
        if k in own:
            if not isinstance(v, torch.Tensor):
                mismatched.append(f"{k}: checkpoint holds a {type(v).__name__}, not a tensor")
            elif v.shape != own[k].shape:
                mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}")
    if missing or unexpected or mismatched:
        parts = [f"{len(l)} {name}" for l, name in ((mismatched, "shape mismatch" + "es" * (len(mismatched) != 1)),
                                                    (missing, "missing key" + "s" * (len(missing) != 1)),
                                                    (unexpected, "unexpected key" + "s" * (len(unexpected) != 1)))
                 if l]
        lines = [f"the weights{f' in {source}' if source else ''} do not fit the model: {', '.join(parts)}."]
        for items, name in ((mismatched, "shape mismatches"), (missing, "missing keys"),
                            (unexpected, "unexpected keys")):
            if items:
                lines.append(f"  {name} ({len(items)}): {_head(items)}")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=True)


def _head(items, n: int = 6) -> str:
    shown = "; ".join(items[:n])
    return shown + (f"; ... and {len(items) - n} more" if len(items) > n else "")


# ----------------------------------------------------------------------------- classes


def kinetics400_classes() -> list[str]:
    text = resources.files("sfcli").joinpath("kinetics400_labels.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def default_classes(num_classes: int) -> tuple[list[str], str]:
    """Class names for weights that carry none: the Kinetics-400 names (alphabetical, the
    order of the reference checkpoints) for 400 classes, else class_0, class_1, ..."""
    if num_classes == 400:
        names = kinetics400_classes()
        if len(names) == 400:
            return names, "kinetics400"
    return [f"class_{i}" for i in range(num_classes)], "generic"


# ----------------------------------------------------------------------------- the whole file


RUN_CHECKPOINT = "checkpoint.pt"  # the latest checkpoint inside a run folder


def resolve_checkpoint(path) -> Path:
    """A checkpoint file, or a run folder's latest checkpoint."""
    path = Path(path)
    if path.is_dir():
        if not (path / RUN_CHECKPOINT).is_file():
            raise CheckpointError(f"{path} is a folder without {RUN_CHECKPOINT}: not a finished or started sfcli run")
        return path / RUN_CHECKPOINT
    return path


def read_checkpoint(path, arch: str | None = None, **overrides) -> dict:
    """Load any of the three formats (a file, or a run folder's latest checkpoint) and settle its
    network without building it: returns {"format", "arch", "config", "state_dict" (sfcli layout),
    "classes", "classes_source", "epoch", "clip" (the sfcli run's ClipConfig dict, else None),
    "checkpoint" (the loaded dict)}."""
    path = resolve_checkpoint(path)
    checkpoint = load_checkpoint(path)
    fmt, sd = unwrap(checkpoint, f"checkpoint {path}")
    try:
        state_dict = to_sfcli(sd, fmt)
    except KeyError:
        raise CheckpointError(f"checkpoint {path} has an inconsistent {fmt} key layout") from None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    saved = checkpoint.get("model_config") if checkpoint.get("format") == FORMAT else None
    version = checkpoint.get("version", VERSION) if checkpoint.get("format") == FORMAT else VERSION
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"checkpoint {path} is sfcli format version {version!r}, not one this "
                              f"sfcli reads ({VERSION}); a newer sfcli may read it")
    if isinstance(saved, Mapping):
        saved_arch = checkpoint.get("arch") or "custom"
        if arch is not None and arch != saved_arch:
            raise CheckpointError(f"checkpoint {path} holds a {saved_arch} network, not {arch}; leave out the "
                                  f"architecture to use the checkpoint's own")
        try:
            config = ModelConfig.from_dict({**saved, **overrides})
        except (ConfigError, TypeError) as err:
            raise CheckpointError(f"checkpoint {path} has an invalid model config: {err}") from None
        arch = saved_arch
    else:
        if arch is None and checkpoint.get("arch") in PRESETS:  # sfcli format, config left out
            arch = checkpoint["arch"]
        hints = pyslowfast_cfg_hints(checkpoint.get("cfg")) if fmt == "pyslowfast" else {}
        try:
            arch, config = infer_config(state_dict, arch, hints=hints, **overrides)
        except CheckpointError as err:
            raise CheckpointError(f"checkpoint {path}: {err}") from None
    classes, source = checkpoint.get("classes"), "checkpoint"
    if not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
        classes, source = default_classes(config.num_classes)
    elif len(classes) != config.num_classes:
        raise CheckpointError(f"checkpoint {path} names {len(classes)} classes but its network has "
                              f"{config.num_classes} outputs")
    epoch = checkpoint.get("epoch")
    clip = checkpoint.get("clip") if isinstance(checkpoint.get("clip"), Mapping) else None
    return {"format": fmt, "arch": arch, "config": config, "state_dict": state_dict, "classes": list(classes),
            "classes_source": source, "epoch": epoch if isinstance(epoch, int) else None, "clip": clip,
            "checkpoint": checkpoint}


def load_model(path, arch: str | None = None, **overrides) -> tuple[SlowFast, dict]:
    """(model in eval mode, info) from a checkpoint in any of the three formats.

    sfcli checkpoints build from their own model_config (overrides such as frames or dropout
    apply on top; an `arch` other than the saved one is an error). Foreign ones build from
    `arch`, or from the preset `infer_config` picks, with the structure the weights show.
    info: path, format, arch, config (ModelConfig), classes (the checkpoint's, else the
    defaults `convert` writes), classes_source ("checkpoint", "kinetics400", "generic"), epoch,
    clip (the ClipConfig dict an sfcli run trained with, else None)."""
    read = read_checkpoint(path, arch, **overrides)
    model = SlowFast(read["config"])
    load_weights(model, read["state_dict"], source=str(path))
    model.eval()
    info = {"path": str(path), **{k: read[k] for k in ("format", "arch", "config", "classes", "classes_source",
                                                        "epoch", "clip")}}
    return model, info


def make_payload(model: SlowFast, classes, arch: str = "custom", **extra) -> dict:
    """sfcli's checkpoint dict for a model; `extra` adds training state (optimizer, step, ...)."""
    classes = list(classes)
    if len(classes) != model.cfg.num_classes:
        raise CheckpointError(f"{len(classes)} class names given for a network with {model.cfg.num_classes} outputs")
    return {"format": FORMAT, "version": VERSION, "arch": arch, "model_config": model.cfg.to_dict(),
            "classes": classes, "model": model.state_dict(), **extra}


def convert(src, dst, arch: str | None = None, classes=None, **overrides) -> dict:
    """Read a checkpoint in any format, check it builds and loads, and write it as an sfcli
    checkpoint (weights, config, class names only). Classes: `classes` if given, else the
    checkpoint's, else Kinetics-400's names for 400 outputs, else class_0, class_1, ...
    Returns a summary."""
    model, info = load_model(src, arch, **overrides)
    if classes is not None:
        names, source = list(classes), "given"
    else:
        names, source = info["classes"], info["classes_source"]
    payload = make_payload(model, names, info["arch"], converted_from={"path": str(src), "format": info["format"]})
    save_checkpoint(dst, payload)
    return {"source": str(src), "destination": str(dst), "format": info["format"], "arch": info["arch"],
            "num_classes": model.cfg.num_classes, "classes_source": source, "params": count_params(model),
            "tensors": len(payload["model"]), "config": model.cfg.to_dict()}


__all__ = [
    "CheckpointError", "FORMAT", "FORMATS", "VERSION", "convert", "default_classes", "detect_format", "from_sfcli",
    "infer_config", "infer_fields", "kinetics400_classes", "load_checkpoint", "load_model", "load_weights",
    "make_payload", "pyslowfast_cfg_hints", "pyslowfast_to_pytorchvideo", "pyslowfast_to_sfcli",
    "pytorchvideo_to_pyslowfast", "pytorchvideo_to_sfcli", "read_checkpoint", "resolve_checkpoint", "save_checkpoint",
    "sfcli_to_pyslowfast", "sfcli_to_pytorchvideo", "to_sfcli", "unwrap",
]

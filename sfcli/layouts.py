"""SlowFast's weights as each tool names them: one table with a row per module and a column per layout,
the one translator that reads it, and the recognition of a state dict's layout inside its wrappers."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from sfcli.errors import CheckpointError

LAYOUTS = ("sfcli", "pyslowfast", "pytorchvideo", "caffe2")
TITLES = {"sfcli": "sfcli", "pyslowfast": "PySlowFast", "pytorchvideo": "PyTorchVideo", "caffe2": "Caffe2"}

# One row per module of the network: its kind (which sets its parameters), the part of the network
# it belongs to, and its name in each layout, in LAYOUTS order. In a name
#   {p}  pathway, 0 Slow and 1 Fast; sfcli spells it {pathway} (slow, fast), Caffe2 {t} ("", "t_");
#   {s}  stage as ResNets count them, 2-5 (res2-res5);
#   {j}  bottleneck within its stage; a non-local block has the number of the bottleneck it follows;
#   {l}  lateral connection, 0 after the stem to 3 after res4;
#   {s-2}, {l+1}: the same number as that layout counts it.
# Two fields are worked out from the other blocks of the stage: sfcli's {i}, a block's position in
# its stage's Sequential (bottlenecks and non-local blocks in order), and Caffe2's {last}, the last
# Fast bottleneck of stage {l+1}: Caffe2 names a lateral after the layer it taps (the first one
# after pool1, hence its own rows). A tuple lists every name a layout has used, the first is the
# one written; None: the layout has no such module.
TABLE = (
    # kind     part         sfcli, pyslowfast, pytorchvideo, caffe2
    ("conv", "stem", "{pathway}.stem.0.0", "s1.pathway{p}_stem.conv",
     "blocks.0.multipathway_blocks.{p}.conv", "{t}conv1"),
    ("bn", "stem", "{pathway}.stem.0.1", "s1.pathway{p}_stem.bn",
     "blocks.0.multipathway_blocks.{p}.norm", "{t}res_conv1_bn"),
    ("conv", "lateral", "laterals.0.conv.0", "s1_fuse.conv_f2s",
     "blocks.0.multipathway_fusion.conv_fast_to_slow", "t_pool1_subsample"),
    ("bn", "lateral", "laterals.0.conv.1", "s1_fuse.bn",
     "blocks.0.multipathway_fusion.norm", "t_pool1_subsample_bn"),
    ("conv", "lateral", "laterals.{l}.conv.0", "s{l+1}_fuse.conv_f2s",
     "blocks.{l}.multipathway_fusion.conv_fast_to_slow", "t_res{l+1}_{last}_branch2c_bn_subsample"),
    ("bn", "lateral", "laterals.{l}.conv.1", "s{l+1}_fuse.bn",
     "blocks.{l}.multipathway_fusion.norm", "t_res{l+1}_{last}_branch2c_bn_subsample_bn"),
    ("conv", "bottleneck", "{pathway}.stages.{s-2}.{i}.branch2.0.0", "s{s}.pathway{p}_res{j}.branch2.a",
     "blocks.{s-1}.multipathway_blocks.{p}.res_blocks.{j}.branch2.conv_a", "{t}res{s}_{j}_branch2a"),
    ("bn", "bottleneck", "{pathway}.stages.{s-2}.{i}.branch2.0.1", "s{s}.pathway{p}_res{j}.branch2.a_bn",
     "blocks.{s-1}.multipathway_blocks.{p}.res_blocks.{j}.branch2.norm_a", "{t}res{s}_{j}_branch2a_bn"),
    ("conv", "bottleneck", "{pathway}.stages.{s-2}.{i}.branch2.1.0", "s{s}.pathway{p}_res{j}.branch2.b",
     "blocks.{s-1}.multipathway_blocks.{p}.res_blocks.{j}.branch2.conv_b", "{t}res{s}_{j}_branch2b"),
    ("bn", "bottleneck", "{pathway}.stages.{s-2}.{i}.branch2.1.1", "s{s}.pathway{p}_res{j}.branch2.b_bn",
     "blocks.{s-1}.multipathway_blocks.{p}.res_blocks.{j}.branch2.norm_b", "{t}res{s}_{j}_branch2b_bn"),
    ("conv", "bottleneck", "{pathway}.stages.{s-2}.{i}.branch2.2.0", "s{s}.pathway{p}_res{j}.branch2.c",
     "blocks.{s-1}.multipathway_blocks.{p}.res_blocks.{j}.branch2.conv_c", "{t}res{s}_{j}_branch2c"),
    ("bn", "bottleneck", "{pathway}.stages.{s-2}.{i}.branch2.2.1", "s{s}.pathway{p}_res{j}.branch2.c_bn",
     "blocks.{s-1}.multipathway_blocks.{p}.res_blocks.{j}.branch2.norm_c", "{t}res{s}_{j}_branch2c_bn"),
    ("conv", "bottleneck", "{pathway}.stages.{s-2}.{i}.branch1.0", "s{s}.pathway{p}_res{j}.branch1",
     "blocks.{s-1}.multipathway_blocks.{p}.res_blocks.{j}.branch1_conv", "{t}res{s}_{j}_branch1"),
    ("bn", "bottleneck", "{pathway}.stages.{s-2}.{i}.branch1.1", "s{s}.pathway{p}_res{j}.branch1_bn",
     "blocks.{s-1}.multipathway_blocks.{p}.res_blocks.{j}.branch1_norm", "{t}res{s}_{j}_branch1_bn"),
    # PyTorchVideo's SlowFast has no non-local blocks; older PySlowFast names their BN `bn`.
    ("conv", "non-local", "{pathway}.stages.{s-2}.{i}.theta", "s{s}.pathway{p}_nonlocal{j}.conv_theta",
     None, "{t}nonlocal_conv{s}_{j}_theta"),
    ("conv", "non-local", "{pathway}.stages.{s-2}.{i}.phi", "s{s}.pathway{p}_nonlocal{j}.conv_phi",
     None, "{t}nonlocal_conv{s}_{j}_phi"),
    ("conv", "non-local", "{pathway}.stages.{s-2}.{i}.g", "s{s}.pathway{p}_nonlocal{j}.conv_g",
     None, "{t}nonlocal_conv{s}_{j}_g"),
    ("conv", "non-local", "{pathway}.stages.{s-2}.{i}.out.0", "s{s}.pathway{p}_nonlocal{j}.conv_out",
     None, "{t}nonlocal_conv{s}_{j}_out"),
    ("bn", "non-local", "{pathway}.stages.{s-2}.{i}.out.1",
     ("s{s}.pathway{p}_nonlocal{j}.bn", "s{s}.pathway{p}_nonlocal{j}.norm"), None, "{t}nonlocal_conv{s}_{j}_bn"),
    # PyTorchVideo's head is the block after the pool (6); a head at any block number is read.
    ("linear", "head", "fc", "head.projection", ("blocks.6.proj", "blocks.{head}.proj"), "pred"),
)

# Placeholders spelt as words: the field they give and its word for each value.
WORDS = {"pathway": ("p", ("slow", "fast")), "t": ("p", ("", "t_"))}
PARAMS = {"conv": ("weight", "bias"), "linear": ("weight", "bias"),
          "bn": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
# Caffe2 appends a short suffix to the module's name; it keeps no BN counter (load_weights fills it).
CAFFE2_PARAMS = {"conv": {"weight": "_w", "bias": "_b"}, "linear": {"weight": "_w", "bias": "_b"},
                 "bn": {"weight": "_s", "bias": "_b", "running_mean": "_rm", "running_var": "_riv"}}


@dataclass(frozen=True)
class Row:
    kind: str
    part: str
    names: dict  # layout -> tuple of _Name, empty where the layout has no such module


@dataclass(frozen=True)
class _Name:
    """One name of a module: the regex that reads a key of it, the text it writes, its fields."""
    pattern: str
    literals: tuple  # the text around the placeholders
    tokens: tuple  # (field, offset, words or None) per placeholder, in order
    suffixes: dict  # parameter -> how this layout appends it


@dataclass
class _Key:
    """A key read through the table: the row of its module, the values of its fields, its parameter."""
    row: Row
    fields: dict
    param: str


_TOKEN = re.compile(r"\{(\w+)([+-]\d+)?\}")


def _suffixes(layout: str, kind: str) -> dict:
    return CAFFE2_PARAMS[kind] if layout == "caffe2" else {p: "." + p for p in PARAMS[kind]}


def _compile(template: str, suffixes: dict) -> _Name:
    parts = _TOKEN.split(template)  # literal, name, offset, literal, name, offset, ..., literal
    literals, tokens = parts[::3], []
    pattern = re.escape(literals[0])
    for name, offset, literal in zip(parts[1::3], parts[2::3], literals[1:]):
        field, words = WORDS.get(name, (name, None))
        pattern += ("(" + "|".join(map(re.escape, words)) + ")" if words else r"(\d+)") + re.escape(literal)
        tokens.append((field, int(offset or 0), words))
    pattern += "(" + "|".join(map(re.escape, suffixes.values())) + ")"
    return _Name(pattern, tuple(literals), tuple(tokens), suffixes)


def _row(kind: str, part: str, *names) -> Row:
    cells = {}
    for layout, cell in zip(LAYOUTS, names, strict=True):
        templates = () if cell is None else (cell,) if isinstance(cell, str) else cell
        cells[layout] = tuple(_compile(t, _suffixes(layout, kind)) for t in templates)
    return Row(kind, part, cells)


ROWS = tuple(_row(*row) for row in TABLE)


@functools.cache  # compiled on first use: 20 ms that commands without checkpoints do not pay
def _index(layout: str) -> tuple[re.Pattern, dict]:
    """All of `layout`'s names as one regex whose alternatives are tried in table order, and the
    (row, name) of each alternative by the number of its group."""
    names, group = {}, 1
    for row in ROWS:
        for name in row.names[layout]:
            names[group] = (row, name)
            group += 2 + len(name.tokens)  # its own, one per field, the parameter's
    return re.compile("|".join(f"({name.pattern})" for _, name in names.values())), names


def _read(key: str, layout: str) -> _Key | None:
    """`key` read as a name of `layout`, or None if the table has no such name."""
    regex, names = _index(layout)
    m = regex.fullmatch(key)
    if not m:
        return None
    row, name = names[m.lastindex]
    *values, suffix = m.groups()[m.lastindex:m.lastindex + len(name.tokens) + 1]
    fields = {field: words.index(text) if words else int(text) - offset
              for (field, offset, words), text in zip(name.tokens, values)}
    return _Key(row, fields, next(p for p, s in name.suffixes.items() if s == suffix))


def _complete(keys: list[_Key]) -> None:
    """Fill in the fields a layout works out from the rest of the stage: a block's number {j} from
    its position {i} or the other way round, and a lateral's {last}."""
    stages: dict[tuple, list[_Key]] = {}
    for key in keys:
        if key.row.part in ("bottleneck", "non-local"):
            stages.setdefault((key.fields["p"], key.fields["s"]), []).append(key)
    for stage in stages.values():
        if "i" in stage[0].fields:  # by position: a non-local block has the number of the bottleneck before it
            parts = {key.fields["i"]: key.row.part for key in stage}
            numbers, j = {}, -1
            for i in sorted(parts):
                j += parts[i] == "bottleneck"
                numbers[i] = max(j, 0)
            for key in stage:
                key.fields["j"] = numbers[key.fields["i"]]
        else:  # by number: a bottleneck comes before the non-local block of its number
            blocks = sorted({(key.fields["j"], key.row.part == "non-local") for key in stage})
            positions = {block: i for i, block in enumerate(blocks)}
            for key in stage:
                key.fields["i"] = positions[(key.fields["j"], key.row.part == "non-local")]
    last = {}
    for key in keys:
        if key.row.part == "bottleneck" and key.fields["p"] == 1:
            last[key.fields["s"]] = max(last.get(key.fields["s"], 0), key.fields["j"])
    for key in keys:
        if key.row.part == "lateral" and key.fields.get("l", -1) + 1 in last:
            key.fields["last"] = last[key.fields["l"] + 1]


def _write(key: _Key, layout: str) -> str | None:
    """The name of `key` in `layout`; None if the layout has no such parameter (Caffe2's BN counter)."""
    names = key.row.names[layout]
    if not names:
        raise CheckpointError(f"{TITLES[layout]}'s SlowFast has no {key.row.part} blocks, so this network cannot "
                              f"be written in its layout")
    name = names[0]
    if key.param not in name.suffixes:
        return None
    text = name.literals[0]
    for (field, offset, words), literal in zip(name.tokens, name.literals[1:]):
        value = key.fields.get(field)
        if value is None or (words and value >= len(words)) or value + offset < 0:
            raise _Unwritable
        text += (words[value] if words else str(value + offset)) + literal
    return text + name.suffixes[key.param]


class _Unwritable(Exception):
    """A field `layout` cannot spell (a third pathway in sfcli): the key is kept as it is."""


def translate(state_dict: Mapping, src: str, dst: str) -> dict:
    """`state_dict` with its keys renamed from layout `src` to layout `dst` (both in LAYOUTS), in
    the same order. Keys the table does not know are kept as they are; a parameter `dst` has no
    name for is left out."""
    if src == dst:
        return dict(state_dict)
    read = {k: _read(k, src) for k in state_dict}
    _complete([key for key in read.values() if key])
    out = {}
    for k, v in state_dict.items():
        try:
            name = _write(read[k], dst) if read[k] else k
        except _Unwritable:
            name = k
        if name is not None:
            out[name] = v
    return out


def known(key: str, layout: str) -> bool:
    """Whether `key` is the name of a parameter in `layout`."""
    return _read(key, layout) is not None


# ----------------------------------------------------------------------------- recognition

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
    """The layout that names most keys; a layout counts only with its stem: `fc.weight` alone is
    any classifier (torchvision's ResNet)."""
    counts = {}
    for layout in LAYOUTS:
        keys = [key for k in sd if (key := _read(k, layout))]
        stem = any(key.row.part == "stem" and key.row.kind == "conv" and key.param == "weight" for key in keys)
        counts[layout] = len(keys) if stem else 0
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def unwrap(state, source: str = "the checkpoint") -> tuple[str, dict]:
    """The layout of a loaded checkpoint and its state dict in that layout, with wrappers
    (`model_state`, `state_dict`) and key prefixes (`model.`, `module.`) removed."""
    if isinstance(state, Mapping) and state.get("format") == "sfcli":  # sfcli's own files
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

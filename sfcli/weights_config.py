"""The network a state dict holds when its file carries no config: the structure read off tensor
shapes, the closest preset for the rest, and the few settings a PySlowFast cfg adds."""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction

from sfcli.errors import CheckpointError, ConfigError
from sfcli.model_config import STAGE_BLOCKS, ModelConfig
from sfcli.presets import PRESETS, Preset


def infer_fields(sd: Mapping) -> dict:
    """What an sfcli-layout state dict tells about its network: {field: value}, or {field: tuple
    of values} where the weights fit several (gray vs timediff Fast input, none vs ttoc-sum
    laterals). Fields the weights do not show are left out: T (frames), tau and, for T-conv
    laterals, alpha come from the preset (or from a PySlowFast checkpoint's own cfg).

    - pathway: which of `slow.` / `fast.` exist; width: Slow stem channels (Fast's for Fast-only);
      num_classes: rows of the fc weight.
    - depth: blocks per stage, looked up in model_config.STAGE_BLOCKS (res4 tells 50 from 101).
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
    for p in present:
        stem = shape[f"{p}.stem.0.0.weight"]
        if len(stem) != 5 or 0 in stem:
            raise CheckpointError(f"the {p} stem's weight has shape {stem}, not that of a 3D convolution "
                                  f"(out, in, time, height, width), so the weights are damaged")
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
        agree = sum(weights.get(f, 1) for f, v in fields.items() if _fits(v, getattr(preset.model, f)))
        return (-agree, "8x8" not in name, position)

    return min(enumerate(PRESETS.items()), key=score)[1][0]


# What weights cannot show: presets that differ only here hold tensors of the same shapes.
UNSEEN_FIELDS = ("frames", "tau", "alpha")


def _unresolved(fields: dict, settled) -> list[str]:
    """The presets that fit the weights in every field they show, where more than one fits and
    they differ in an unseen field that `settled` (hints, overrides) does not set."""
    fitting = [name for name, preset in PRESETS.items()
               if all(_fits(v, getattr(preset.model, f)) for f, v in fields.items() if f != "num_classes")]
    differing = {f for f in UNSEEN_FIELDS if f not in settled
                 and len({getattr(PRESETS[name].model, f) for name in fitting}) > 1}
    return fitting if differing else []


def _label(arch: str, config: ModelConfig) -> str:
    """The preset that is exactly `config` but for its classes and dropout (`arch` if several
    are), so that a network read with a cfg's frames and tau is named by them; where none is,
    "custom" (whose pipeline is the paper's), unless `arch`'s pipeline is another (the small preset's)."""
    plain = lambda c: {**c.to_dict(), "num_classes": 0, "dropout": 0}  # noqa: E731
    same = [name for name, preset in PRESETS.items() if plain(preset.model) == plain(config)]
    if same:
        return arch if arch in same else same[0]
    paper = Preset(config)
    preset = PRESETS[arch]
    return "custom" if (preset.crop, preset.test_crop, preset.mean, preset.std) == \
        (paper.crop, paper.test_crop, paper.mean, paper.std) else arch


def infer_config(state_dict: Mapping, arch: str | None = None, hints: dict | None = None,
                 **overrides) -> tuple[str, ModelConfig]:
    """(arch, config) for an sfcli-layout state dict that came without a config.

    The weights decide the structure (see `infer_fields`); the preset decides what they cannot
    show: frames T, tau, alpha of T-conv laterals, dropout. Without `arch` the closest preset is
    chosen (`_choose_preset`); `hints` (from a PySlowFast cfg) may then set alpha, frames, tau,
    and the result is named by the preset it then is (`_label`). Where presets that differ only
    in what the weights cannot show fit alike (Slow 4x16 and 8x8) and neither hints nor
    overrides settle it, a CheckpointError names them. With `arch`, a structural field where the
    preset disagrees with the weights is a CheckpointError naming both, unless `overrides` sets
    it; num_classes always follows the weights unless overridden. `overrides` (None values
    ignored) win over everything."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    fields = infer_fields(state_dict)
    explicit = arch is not None
    if arch is None:
        if candidates := _unresolved(fields, {**(hints or {}), **overrides}):
            raise CheckpointError(f"the weights fit {' and '.join(candidates)} alike (their frames and tau "
                                  f"are not in the weights): pass --arch (or --frames and --tau) to say which")
        arch = _choose_preset(fields)
    elif arch not in PRESETS:
        raise CheckpointError(f"unknown architecture {arch!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[arch].model
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
        config = preset.replace(**{**values, **overrides})
    except ConfigError as err:
        raise CheckpointError(f"the inferred network is not valid: {err}") from None
    return (arch if explicit else _label(arch, config)), config


def _show(value) -> str:
    return str(value) if not isinstance(value, tuple) else "(" + ", ".join(map(str, value)) + ")"


def cfg_values(cfg_text: str) -> dict[str, str]:
    """The scalars of a YAML mapping as PySlowFast's cfg.dump() writes it, by dotted path
    ("SLOWFAST.ALPHA", not the "MIXUP.ALPHA" before it): nesting by indentation, quotes
    stripped; list items and anything else that is not `KEY: value` are skipped."""
    values, parents = {}, []  # parents: (indent, key) of the mappings the current line is inside
    for line in cfg_text.splitlines():
        if not (m := re.match(r"^( *)([A-Za-z_]\w*):(?:\s+(.*?))?\s*$", line)):
            continue
        indent, key, value = len(m.group(1)), m.group(2), m.group(3)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if value:
            values[".".join([k for _, k in parents] + [key])] = value.strip("'\"")
        else:
            parents.append((indent, key))
    return values


def pyslowfast_cfg_hints(cfg_text) -> dict:
    """alpha, frames and tau from the YAML dump PySlowFast stores under "cfg": DATA.NUM_FRAMES
    is the Fast-rate clip, DATA.SAMPLING_RATE the Fast stride, SLOWFAST.ALPHA the ratio (1 for
    MODEL.ARCH slow). Anything unexpected gives {}."""
    if not isinstance(cfg_text, str):
        return {}
    values = cfg_values(cfg_text)
    try:
        frames, rate = int(values["DATA.NUM_FRAMES"]), int(values["DATA.SAMPLING_RATE"])
        arch = values.get("MODEL.ARCH", "slowfast")
        alpha = int(values.get("SLOWFAST.ALPHA", 8)) if arch == "slowfast" else 1
    except (KeyError, ValueError):
        return {}
    if alpha < 1 or frames % alpha:
        return {}
    return {"alpha": alpha, "frames": frames // alpha, "tau": rate * alpha}

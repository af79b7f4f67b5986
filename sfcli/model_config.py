"""ModelConfig: every field that defines a SlowFast network (Feichtenhofer et al., ICCV 2019), checked
when it is made, with the sizes derived from it; the network itself is sfcli.model."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction

from sfcli.errors import ConfigError

PATHWAYS = ("slowfast", "slow", "fast")
LATERALS = ("t-conv", "t-sample", "ttoc-sum", "ttoc-concat", "none")
FAST_INPUTS = ("rgb", "gray", "timediff", "half")
# Bottleneck blocks in res2..res5. 14 and 26 are the small depths for CPU work and tests.
STAGE_BLOCKS = {14: (1, 1, 1, 1), 26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def parse_fraction(value: str | int | float | Fraction) -> Fraction:
    """Read a channel ratio in (0, 1] such as '1/8' or '0.125', or an integer n >= 1 taken as 1/n
    (the reference's BETA_INV: 8 is 1/8). Anything else, 3/2 included, is an error."""
    try:
        frac = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"cannot read beta {value!r} as a fraction such as 1/8") from None
    if frac > 1 and frac.denominator == 1:
        return 1 / frac
    if not 0 < frac <= 1:
        raise ConfigError(f"beta must be a fraction in (0, 1] such as 1/8, or an integer n >= 1 meaning 1/n; "
                          f"got {value}")
    return frac


# Upper bounds far past any network of the paper (whose widest is 64 channels, 8 x 8 frames):
# a larger value is a mistake, and would ask for gigabytes before anything could be checked.
LIMITS = {"width": 1024, "frames": 256, "alpha": 64, "tau": 1024, "fusion_kernel": 31, "fusion_ratio": 64,
          "num_classes": 100_000}


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a network. Frame counts are for one clip: the Slow pathway sees
    `frames` frames `tau` apart, the Fast pathway alpha*frames frames tau/alpha apart."""

    depth: int = 50
    width: int = 64  # channels of the Slow stem; every other width scales from it
    alpha: int = 8
    beta: Fraction = Fraction(1, 8)
    frames: int = 4
    tau: int = 16
    fusion_kernel: int = 5
    lateral: str = "t-conv"
    pathway: str = "slowfast"
    fast_input: str = "rgb"
    nonlocal_res4: tuple[int, ...] = ()  # indices of res4 blocks followed by a non-local block
    # res4 blocks, from the first, whose first conv is temporal; None: all. The reference's
    # "_50_50" R101 models keep R50's six, which is what the paper's R101 GFLOPs count.
    temporal_res4: int | None = None
    fusion_ratio: int = 2  # a T-conv lateral maps C Fast channels to fusion_ratio * C
    num_classes: int = 400
    dropout: float = 0.5
    # Start every residual block as the identity (the reference's ZERO_INIT_FINAL_BN); it slows
    # the first hundreds of steps, which only short runs of small networks notice.
    zero_init_residual: bool = True

    def __post_init__(self):
        object.__setattr__(self, "beta", parse_fraction(self.beta))
        object.__setattr__(self, "nonlocal_res4", tuple(int(i) for i in self.nonlocal_res4))
        for name in ("alpha", "frames", "tau", "fusion_kernel", "num_classes", "width", "fusion_ratio"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name, limit in LIMITS.items():
            if getattr(self, name) > limit:
                raise ConfigError(f"{name} {getattr(self, name)} is more than sfcli builds (at most {limit:,})")
        if self.fast_frames > LIMITS["frames"]:
            raise ConfigError(f"alpha x frames is {self.fast_frames} frames a clip, more than sfcli builds "
                              f"(at most {LIMITS['frames']})")
        if self.depth not in STAGE_BLOCKS:
            raise ConfigError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {self.depth}")
        for name, allowed in (("pathway", PATHWAYS), ("lateral", LATERALS), ("fast_input", FAST_INPUTS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.tau % self.alpha:
            raise ConfigError(f"tau ({self.tau}) must be divisible by alpha ({self.alpha}): the Fast pathway "
                              f"samples every tau/alpha frames")
        if self.fast_width < 1:
            raise ConfigError(f"beta {self.beta} leaves the Fast pathway no channels at width {self.width}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.fusion_kernel % 2 == 0:
            raise ConfigError(f"fusion_kernel must be odd so frames stay aligned, got {self.fusion_kernel}")
        if self.temporal_res4 is not None and not 0 <= self.temporal_res4 <= STAGE_BLOCKS[self.depth][2]:
            raise ConfigError(f"temporal_res4 must be between 0 and the {STAGE_BLOCKS[self.depth][2]} blocks of res4")
        if any(not 0 <= i < STAGE_BLOCKS[self.depth][2] for i in self.nonlocal_res4):
            raise ConfigError(f"nonlocal_res4 names a block outside res4 ({STAGE_BLOCKS[self.depth][2]} blocks)")
        if self.pathway == "slowfast" and self.lateral == "ttoc-sum" and self.alpha * self.fast_width != self.width:
            raise ConfigError(f"lateral ttoc-sum needs alpha*beta = 1 so that time-to-channel matches the Slow "
                              f"width (alpha {self.alpha}, beta {self.beta})")

    @property
    def fast_width(self) -> int:
        return self.fast_channels(self.width)

    def fast_channels(self, slow_channels: int) -> int:
        """The Fast pathway's width where Slow has `slow_channels`, rounded down per layer as the
        reference's `dim // beta_inv` (which cannot build beta = 1/6 or 1/12 at all: its laterals
        and Slow's inputs disagree by a channel there)."""
        return math.floor(slow_channels * self.beta)

    @property
    def fast_frames(self) -> int:
        """Frames of the clip the network takes (the Fast rate), whatever the pathways."""
        return self.alpha * self.frames

    @property
    def fast_stride(self) -> int:
        return self.tau // self.alpha

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["beta"] = str(self.beta)
        d["nonlocal_res4"] = list(self.nonlocal_res4)
        return d

    def replace(self, **changes) -> ModelConfig:
        """This network with the named fields changed, checked as from_dict checks a saved one."""
        return self.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model setting(s): {', '.join(unknown)}")
        return cls(**d)

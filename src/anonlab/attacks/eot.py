"""Expectation over Transformation: the random pose, colour, noise and blur a patch sees at each training step.

Pose and colour ranges are :class:`~anonlab.defenses.patch.PoseRanges` (the same ranges the ``patch`` defense can
apply at evaluation); ``noise`` (std of Gaussian pixel noise on the patch, [0, 1] units) and ``blur_sigma`` (a
(lo, hi) range in frame pixels, one sigma per step) are training-only. Draws come from a seeded
``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from anonlab._checks import check_range
from anonlab.defenses.patch import POSE_DIMS, Pose, PoseRanges, pose_from_uniform
from anonlab.filters import gaussian_blur2d


@dataclass(frozen=True)
class EOT:
    """Training transformation distribution (see module doc); all zero/identity: no EOT."""

    pose: PoseRanges = field(default_factory=PoseRanges)
    noise: float = 0.0
    blur_sigma: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        check_range("eot.noise", self.noise, 0)
        b = tuple(self.blur_sigma)
        if len(b) != 2 or not 0 <= b[0] <= b[1]:
            raise ValueError(f"eot.blur_sigma must be a range [lo, hi] with 0 <= lo <= hi pixels, got {list(b)!r}")
        object.__setattr__(self, "blur_sigma", (float(b[0]), float(b[1])))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EOT:
        d = dict(d)
        extra = {k: d.pop(k) for k in ("noise", "blur_sigma") if k in d}
        try:
            return cls(PoseRanges(**d), **extra)
        except TypeError as e:
            valid = [*PoseRanges.__dataclass_fields__, "noise", "blur_sigma"]
            raise ValueError(f"eot: {e}; valid keys: {', '.join(valid)}") from None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.pose), "noise": self.noise, "blur_sigma": list(self.blur_sigma)}


def sample_pose(n: int, ranges: PoseRanges, gen: torch.Generator) -> Pose:
    """N random poses within ``ranges``, drawn on the generator's device."""
    return pose_from_uniform(torch.rand(n, POSE_DIMS, generator=gen, device=gen.device), ranges)


def photometric(colour: Tensor, eot: EOT, gen: torch.Generator) -> Tensor:
    """Pixel noise and one Gaussian blur (sigma drawn per call) on canvases ``colour (N, 3, h, w)`` in [0, 1]."""
    out = colour
    if eot.noise > 0:
        z = torch.randn(colour.shape, generator=gen, device=gen.device).to(colour)
        out = (out + eot.noise * z).clamp(0, 1)
    lo, hi = eot.blur_sigma
    if hi > 0:
        sigma = lo + (hi - lo) * float(torch.rand((), generator=gen, device=gen.device))
        if sigma >= 0.3:
            out = gaussian_blur(out, sigma)
    return out


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """The EOT blur of float canvases (N, C, h, w): :func:`anonlab.filters.gaussian_blur2d` with replicate borders,
    as a sum of shifted copies (for these short kernels ~3x faster on CPU than a depthwise convolution, forward
    and backward)."""
    return gaussian_blur2d(x, sigma, border="replicate", method="shift")

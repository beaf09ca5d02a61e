"""The defense registry and the ``RegionDefense`` base that every module twin builds on."""

from __future__ import annotations

import inspect
import json
from typing import Any, ClassVar

from torch import Tensor, nn

from anonlab.defenses.regions import SHAPES, Regions, make_regions
from anonlab.registry import Registry
from anonlab.types import Detections, check_images

DEFENSES: Registry[nn.Module] = Registry("defense")


class RegionDefense(nn.Module):
    """Twin of a pure region function: stores validated config, builds regions, calls the function.

    ``forward(images uint8 (B,3,H,W), dets: Detections on the same device) -> uint8 (B,3,H,W)``; ``dets`` are
    the regions to anonymize (ground truth, or a detector's boxes in the realistic pipeline).
    ``shape``: ``rect`` or ``ellipse`` (inscribed); ``mask_scale`` >= 1 enlarges each box about its centre.
    """

    name: ClassVar[str] = ""

    def __init__(self, shape: str = "rect", mask_scale: float = 1.0) -> None:
        super().__init__()
        if shape not in SHAPES:
            raise ValueError(f"{self.name}: unknown region shape {shape!r}; valid: {', '.join(SHAPES)}")
        if not mask_scale >= 1.0:
            raise ValueError(f"{self.name}: mask_scale must be >= 1 (1.3 enlarges boxes by 30 %), got {mask_scale!r}")
        self.shape = shape
        self.mask_scale = float(mask_scale)

    def apply(self, images: Tensor, regions: Regions) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, images: Tensor, dets: Detections) -> Tensor:
        check_images(images, f"{self.name} input")
        if dets.device != images.device:
            raise ValueError(f"{self.name}: detections on {dets.device}, images on {images.device}")
        regions = make_regions(dets, images.shape[0], tuple(images.shape[-2:]), self.shape, self.mask_scale)
        return self.apply(images, regions)

    def params(self) -> dict[str, Any]:
        """Constructor arguments as given (None-valued alternatives dropped): the setting's identity in results."""
        sig = inspect.signature(type(self).__init__)
        out = {}
        for k in sig.parameters:
            if k == "self":
                continue
            v = getattr(self, k, None)
            if v is not None:
                out[k] = list(v) if isinstance(v, tuple) else v
        return out

    #: parameters left out of ``label()`` while they hold their default value (strengths always show)
    label_quiet: ClassVar[tuple[str, ...]] = ("shape", "mask_scale", "seed", "color")

    def label(self) -> str:
        """Short human-readable setting, e.g. ``gaussian_blur(sigma_rel=0.5)``: strengths always, other
        parameters only where they differ from their defaults (``solid(shape=ellipse,mask_scale=1.3)``)."""
        defaults = {k: p.default for k, p in inspect.signature(type(self).__init__).parameters.items()}
        p = {k: v for k, v in self.params().items()
             if not (k in self.label_quiet and _same(v, defaults.get(k)))}
        inner = ",".join(f"{k}={'-'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in p.items())
        return f"{self.name}({inner})" if inner else self.name

    def params_json(self) -> str:
        return json.dumps(self.params(), sort_keys=True)


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        default = list(default)
    return value == default


def exactly_one(name: str, **options: Any) -> tuple[str, Any]:
    """Return the one option that is not None; raise naming all of them otherwise."""
    given = {k: v for k, v in options.items() if v is not None}
    if len(given) != 1:
        raise ValueError(f"{name}: give exactly one of {', '.join(options)}, got {given or 'none'}")
    return next(iter(given.items()))


def positive(name: str, what: str, value: Any, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "a positive integer" if integer else "> 0"
        raise ValueError(f"{name}: {what} must be {kind}, got {value!r}")

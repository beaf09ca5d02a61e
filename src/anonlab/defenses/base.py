"""The defense registry, the ``DefenseBase`` of every registered defense (it implements the
:class:`anonlab.types.Defense` protocol) and ``RegionDefense``, the base of the
module twins of the pure region functions."""

from __future__ import annotations

import inspect
import json
from typing import Any, ClassVar

from torch import Tensor, nn

from anonlab._checks import check_choice, check_range
from anonlab.defenses.regions import SHAPES, Regions, make_regions
from anonlab.registry import Registry
from anonlab.types import Defense, Detections, Kind, check_images

DEFENSES: Registry[nn.Module] = Registry("defense")


class DefenseBase(nn.Module):
    """Base of every registered defense: ``forward(images uint8 (B,3,H,W), dets: Detections on the same device)
    -> a new uint8 (B,3,H,W)``, plus the setting's identity in results (``params``, ``label``, ``params_json``).

    Contract (checked for every entry by ``tests/test_defense_conformance.py``): shape, dtype and device are kept,
    the input is not modified, and pixels outside the boxes stay unchanged unless the class sets
    ``outside_changes`` (a worn patch can reach beyond its box).
    """

    name: ClassVar[str] = ""
    #: whether pixels outside the (scaled) boxes may change
    outside_changes: ClassVar[bool] = False
    #: worn in the scene (see :class:`anonlab.types.Defense`); redactions are not
    worn: ClassVar[bool] = False

    def worn_on(self) -> Kind | None:
        """The object kind a worn defense sits on; None for a redaction."""
        return None

    def controls(self) -> list[Defense]:
        """Settings that run beside this one (see :class:`anonlab.types.Defense`); none by default."""
        return []

    def check_inputs(self, images: Tensor, dets: Detections) -> None:
        """Raise ``ValueError`` unless ``images`` is uint8 (B, 3, H, W) and ``dets`` lie on its device."""
        check_images(images, f"{self.name} input")
        if dets.device != images.device:
            raise ValueError(f"{self.name}: detections on {dets.device}, images on {images.device}")

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


class RegionDefense(DefenseBase):
    """Twin of a pure region function: stores validated config, builds regions, calls the function.

    ``forward(images uint8 (B,3,H,W), dets: Detections on the same device) -> uint8 (B,3,H,W)``; ``dets`` are
    the regions to anonymize (ground truth, or a detector's boxes in the realistic pipeline).
    ``shape``: ``rect`` or ``ellipse`` (inscribed); ``mask_scale`` >= 1 enlarges each box about its centre.
    """

    def __init__(self, shape: str = "rect", mask_scale: float = 1.0) -> None:
        super().__init__()
        check_choice("region shape", shape, SHAPES, where=self.name)
        self.shape = shape
        self.mask_scale = check_range("mask_scale", mask_scale, 1.0, where=self.name, note="1.3 enlarges boxes by 30 %")

    def apply(self, images: Tensor, regions: Regions) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, images: Tensor, dets: Detections) -> Tensor:
        self.check_inputs(images, dets)
        regions = make_regions(dets, images.shape[0], tuple(images.shape[-2:]), self.shape, self.mask_scale)
        return self.apply(images, regions)


def _same(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        default = list(default)
    return value == default

"""Registered defenses: thin ``nn.Module`` twins of the pure functions in :mod:`anonlab.defenses.ops`.

Each is built from ``conf/defense/<name>.yaml``; bad values raise when built, before any work.
"""

from __future__ import annotations

from torch import Tensor

from anonlab._checks import check_int, check_positive, exactly_one
from anonlab.defenses import ops
from anonlab.defenses.base import DEFENSES, RegionDefense
from anonlab.defenses.regions import Regions
from anonlab.types import Detections, check_images


@DEFENSES.register("none")
class NoDefense(RegionDefense):
    """The clean baseline: returns a copy of the images unchanged."""

    def forward(self, images: Tensor, dets: Detections) -> Tensor:
        check_images(images, "none input")
        return images.clone()

    def apply(self, images: Tensor, regions: Regions) -> Tensor:
        return images.clone()

    def params(self) -> dict:
        return {}


@DEFENSES.register("gaussian_blur")
class GaussianBlur(RegionDefense):
    """Gaussian blur; ``sigma`` in pixels or ``sigma_rel`` x box height (exactly one)."""

    def __init__(self, sigma: float | None = None, sigma_rel: float | None = None, shape: str = "rect",
                 mask_scale: float = 1.0) -> None:
        super().__init__(shape, mask_scale)
        what, value = exactly_one(self.name, sigma=sigma, sigma_rel=sigma_rel)
        check_positive(what, value, where=self.name)
        self.sigma = None if sigma is None else float(sigma)
        self.sigma_rel = None if sigma_rel is None else float(sigma_rel)

    def apply(self, images: Tensor, regions: Regions) -> Tensor:
        return ops.gaussian_blur(images, regions, self.sigma, self.sigma_rel)


@DEFENSES.register("box_blur")
class BoxBlur(RegionDefense):
    """Box blur (deface's kind); ``kernel`` in pixels or ``kernel_rel`` x box size (exactly one)."""

    def __init__(self, kernel: int | None = None, kernel_rel: float | None = None, shape: str = "rect",
                 mask_scale: float = 1.0) -> None:
        super().__init__(shape, mask_scale)
        what, value = exactly_one(self.name, kernel=kernel, kernel_rel=kernel_rel)
        if what == "kernel":
            check_int(what, value, 1, where=self.name, note="pixels", whole_floats=True)
        else:
            check_positive(what, value, where=self.name)
        self.kernel = None if kernel is None else int(kernel)
        self.kernel_rel = None if kernel_rel is None else float(kernel_rel)

    def apply(self, images: Tensor, regions: Regions) -> Tensor:
        return ops.box_blur(images, regions, self.kernel, self.kernel_rel)


@DEFENSES.register("pixelate")
class Pixelate(RegionDefense):
    """Pixelation; ``blocks`` (N x N per region) or ``block_px`` (square blocks in pixels), exactly one."""

    def __init__(self, blocks: int | None = None, block_px: int | None = None, shape: str = "rect",
                 mask_scale: float = 1.0) -> None:
        super().__init__(shape, mask_scale)
        what, value = exactly_one(self.name, blocks=blocks, block_px=block_px)
        check_int(what, value, 1, where=self.name, whole_floats=True)
        self.blocks = None if blocks is None else int(blocks)
        self.block_px = None if block_px is None else int(block_px)

    def apply(self, images: Tensor, regions: Regions) -> Tensor:
        return ops.pixelate(images, regions, self.blocks, self.block_px)


@DEFENSES.register("solid")
class SolidFill(RegionDefense):
    """Solid fill with one RGB colour (black by default)."""

    def __init__(self, color: tuple[int, int, int] | list[int] = (0, 0, 0), shape: str = "rect",
                 mask_scale: float = 1.0) -> None:
        super().__init__(shape, mask_scale)
        color = tuple(color)
        if len(color) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in color):
            raise ValueError(f"{self.name}: color must be three integers in [0, 255] (R, G, B), got {color!r}")
        self.color = color

    def apply(self, images: Tensor, regions: Regions) -> Tensor:
        return ops.solid_fill(images, regions, self.color)


@DEFENSES.register("noise")
class AdditiveNoise(RegionDefense):
    """Additive Gaussian noise of ``std`` grey levels (frozen, seeded noise field)."""

    def __init__(self, std: float = 32.0, seed: int = 0, shape: str = "rect", mask_scale: float = 1.0) -> None:
        super().__init__(shape, mask_scale)
        check_positive("std", std, where=self.name, note="grey levels")
        check_int("seed", seed, 0, where=self.name)
        self.std = float(std)
        self.seed = seed

    def apply(self, images: Tensor, regions: Regions) -> Tensor:
        return ops.additive_noise(images, regions, self.std, self.seed)

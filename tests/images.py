"""Real test images shipped by installed dependencies (never data from ../shared)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import torch

from anonlab.io.images import read_image


def package_file(module: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations, f"{module} is not installed"
    return Path(list(spec.submodule_search_locations)[0], *parts)


BUS = ("ultralytics", "assets", "bus.jpg")
ZIDANE = ("ultralytics", "assets", "zidane.jpg")
ASTRONAUT = ("skimage", "data", "astronaut.png")


@lru_cache(maxsize=None)
def load(which: tuple[str, ...]) -> torch.Tensor:
    """uint8 (1, 3, H, W) RGB."""
    return read_image(package_file(*which))[None]

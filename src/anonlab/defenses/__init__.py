"""Defenses: pure batched region functions (``ops``) plus registered module twins (``modules``)."""

from anonlab.defenses import modules, patch  # noqa: F401  (registration side effect)
from anonlab.defenses.base import DEFENSES, Defense, RegionDefense
from anonlab.defenses.modules import (
           AdditiveNoise,
           BoxBlur,
           GaussianBlur,
           NoDefense,
           Pixelate,
           SolidFill,
)
from anonlab.defenses.regions import Regions, make_regions

__all__ = ["DEFENSES", "Defense", "RegionDefense", "Regions", "make_regions", "AdditiveNoise", "BoxBlur",
           "GaussianBlur", "NoDefense", "Pixelate", "SolidFill"]

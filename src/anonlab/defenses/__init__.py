"""Defenses: pure batched region functions (``ops``) plus registered module twins (``modules``)."""

from anonlab.defenses import modules, patch  # noqa: F401  (registration side effect)
from anonlab.defenses.base import DEFENSES, DefenseBase, RegionDefense
from anonlab.defenses.modules import (
           AdditiveNoise,
           BoxBlur,
           GaussianBlur,
           NoDefense,
           Pixelate,
           SolidFill,
)
from anonlab.defenses.regions import Regions, make_regions

__all__ = ["DEFENSES", "DefenseBase", "RegionDefense", "Regions", "make_regions", "AdditiveNoise", "BoxBlur",
           "GaussianBlur", "NoDefense", "Pixelate", "SolidFill"]

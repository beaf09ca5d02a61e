"""Defenses: pure batched region functions (``ops``) plus registered module twins (``modules``). Every module of
this package is imported (sorted by name), so a new defense is one module plus its ``conf/defense/<name>.yaml``."""

from anonlab.defenses.base import DEFENSES, DefenseBase, RegionDefense
from anonlab.registry import import_submodules

import_submodules(__name__, __path__)

from anonlab.defenses.modules import (  # noqa: E402  (after registration)
           AdditiveNoise,
           BoxBlur,
           GaussianBlur,
           NoDefense,
           Pixelate,
           SolidFill,
)
from anonlab.defenses.regions import Regions, make_regions  # noqa: E402

__all__ = ["DEFENSES", "DefenseBase", "RegionDefense", "Regions", "make_regions", "AdditiveNoise", "BoxBlur",
           "GaussianBlur", "NoDefense", "Pixelate", "SolidFill"]

"""Detector adapters. Each module registers its entries in ``DETECTORS``; every module of this package is imported
(sorted by name), so a new detector is one module plus its ``conf/detector/<name>.yaml``."""

from anonlab.detectors.base import DETECTORS
from anonlab.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["DETECTORS"]

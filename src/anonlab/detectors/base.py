"""The detector registry and helpers shared by adapters."""

from __future__ import annotations

from anonlab.registry import Registry
from anonlab.types import Detector

DETECTORS: Registry[Detector] = Registry("detector")

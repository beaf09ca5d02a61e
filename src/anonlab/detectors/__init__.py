"""Detector adapters. Each module registers its entries in ``DETECTORS``; imported explicitly, in order."""

from anonlab.detectors import (  # noqa: F401  (registration side effect)
    centerface,
    dlib_detectors,
    haar,
    hog_person,
    mtcnn,
    nanodet,
    ultraface,
    ultralytics_yolo,
    yolox,
    yunet,
)
from anonlab.detectors.base import DETECTORS

__all__ = ["DETECTORS"]

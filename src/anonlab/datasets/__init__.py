"""Datasets: manifests + loaders -> ``Sample``s with ground truth. Imported explicitly, in order."""

from anonlab.datasets.base import DATASETS, Dataset, ImageReadError
from anonlab.datasets import composite, default, folder, inria, mot, pennfudan, video, wider_face  # noqa: F401  (registration side effect)

__all__ = ["DATASETS", "Dataset", "ImageReadError"]

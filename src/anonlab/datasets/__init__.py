"""Datasets: manifests + loaders -> ``Sample``s with ground truth. Imported explicitly, in order."""

from anonlab.datasets import (  # noqa: F401  (registration side effect)
    composite,
    default,
    folder,
    inria,
    mot,
    pennfudan,
    video,
    wider_face,
)
from anonlab.datasets.base import DATASETS, SAMPLE_ERRORS, Dataset, ImageReadError, normalize_ground_truth
from anonlab.types import SampleError

__all__ = ["DATASETS", "SAMPLE_ERRORS", "Dataset", "ImageReadError", "SampleError", "normalize_ground_truth"]

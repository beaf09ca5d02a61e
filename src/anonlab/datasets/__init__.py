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
from anonlab.datasets.base import (
    DATASETS,
    Dataset,
    ImageReadError,
    normalize_ground_truth,
)
from anonlab.types import SampleError

__all__ = ["DATASETS", "Dataset", "ImageReadError", "SampleError", "normalize_ground_truth"]

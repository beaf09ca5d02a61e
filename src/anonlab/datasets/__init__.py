"""Datasets: manifests + loaders -> ``Sample``s with ground truth. Every module of this package is imported (sorted
by name), so a new dataset is one module plus its ``conf/dataset/<name>.yaml``."""

from anonlab.datasets.base import (
    DATASETS,
    Dataset,
    ImageReadError,
    normalize_ground_truth,
)
from anonlab.registry import import_submodules
from anonlab.types import SampleError

import_submodules(__name__, __path__)

__all__ = ["DATASETS", "Dataset", "ImageReadError", "SampleError", "normalize_ground_truth"]

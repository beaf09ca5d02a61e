"""The recognizer registry and the ``RecognizerBase`` every face or body embedder builds on.

A recognizer turns a person's face (or body) into an embedding; identity leakage is measured by matching the
embeddings of redacted probes against a gallery (:class:`anonlab.types.Recognizer` states the contract).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from anonlab.registry import Registry
from anonlab.types import Kind, check_images

RECOGNIZERS: Registry[nn.Module] = Registry("recognizer")

DISTANCES = ("cosine", "euclidean")


class RecognizerBase(nn.Module):
    """Base of every registered recognizer (implements :class:`anonlab.types.Recognizer`).

    Subclasses declare the class attributes and implement :meth:`crop` (detections -> aligned crops) and
    :meth:`embed` (aligned crops -> embeddings). :meth:`distance` compares embeddings in the declared metric.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[Kind] = "face"
    input_size_hw: ClassVar[tuple[int, int]]
    alignment: ClassVar[str]
    embedding_dim: ClassVar[int]
    distance: ClassVar[str] = "cosine"
    #: the published same-person operating point in ``distance`` units (None where the source gives none)
    threshold: ClassVar[float | None] = None
    #: boxes whose shorter side is below this many pixels (of the image they were found in) are not embedded:
    #: the identity evaluation counts them in ``n_not_embedded``, never as a crash or a guess
    min_face_px: ClassVar[int] = 16
    #: ``"differentiable"``: ``crop_float`` / ``embed_float`` carry gradients to the pixels (white-box cloaking)
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def crop(self, images: Tensor, boxes: Tensor, batch_idx: Tensor) -> tuple[Tensor, Tensor]:
        """Aligned crops of the boxes: ``images`` ``uint8 (B, 3, H, W)`` RGB, ``boxes`` ``float32 (N, 4)`` xyxy
        pixels of those images with ``batch_idx (N,)``; returns ``uint8 (N, 3, *input_size_hw)`` crops and a
        bool ``(N,)`` saying which were aligned by landmarks (False: aligned from the box alone, the counted
        fallback)."""
        raise NotImplementedError

    def embed(self, crops: Tensor) -> Tensor:
        """``uint8 (N, 3, *input_size_hw)`` aligned crops -> ``float32 (N, embedding_dim)`` on their device."""
        raise NotImplementedError

    def check_crops(self, crops: Tensor) -> None:
        """Raise ``ValueError`` unless ``crops`` is ``uint8 (N, 3, *input_size_hw)``."""
        check_images(crops, f"{self.name} crops")
        if tuple(crops.shape[-2:]) != tuple(self.input_size_hw):
            raise ValueError(f"{self.name}: crops must be {self.input_size_hw[0]}x{self.input_size_hw[1]} (H x W), "
                             f"got {tuple(crops.shape[-2:])}")

    def pairwise_distance(self, a: Tensor, b: Tensor) -> Tensor:
        """``(N, D)`` x ``(M, D)`` embeddings -> ``(N, M)`` distances in this recognizer's metric: ``cosine`` is
        1 - cosine similarity (0 same direction, 2 opposite), ``euclidean`` the L2 distance."""
        if self.distance == "cosine":
            return 1.0 - nn.functional.normalize(a, dim=1) @ nn.functional.normalize(b, dim=1).T
        return torch.cdist(a, b)

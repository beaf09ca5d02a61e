"""Identity leakage of one redacted face: can it be matched to the same person's clean face?

Used by ``anonlab redact``'s verification pass (where the panel still finds a face in the output) and by
``anonlab recommend``. The clean face is the same box in the unredacted frame (the person's own face from the same
track, at the same instant: the strongest reference an attacker holding other footage of that person could have).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class CleanMatch:
    """Per-face result of :func:`match_to_clean`, N faces (all on the CPU).

    ``distance`` ``float32 (N,)``: redacted face to its own clean face in the recognizer's metric (NaN where not
    embedded); ``rank`` ``int64 (N,)``: 1 + the number of the batch's other clean faces nearer to the redacted face
    than its own (1 = its own is the nearest; 0 where not embedded); ``matched`` ``bool (N,)``: distance below the
    recognizer's published same-person ``threshold`` (where it has none: rank 1 among at least 2 clean faces);
    ``embedded`` ``bool (N,)``: the box's shorter side is at least ``recognizer.min_face_px`` (smaller faces are
    skipped and counted in ``n_skipped``, never guessed)."""

    distance: Tensor
    rank: Tensor
    matched: Tensor
    embedded: Tensor

    @property
    def n_skipped(self) -> int:
        return int((~self.embedded).sum())


def match_to_clean(recognizer, clean_images: Tensor, redacted_images: Tensor, boxes: Tensor,
                   batch_idx: Tensor) -> CleanMatch:
    """Match each redacted face to the clean faces of the batch.

    ``recognizer``: a :class:`~anonlab.recognizers.RecognizerBase` (``crop``, ``embed``, ``pairwise_distance``,
    ``threshold``, ``min_face_px``); ``clean_images`` and ``redacted_images``: ``uint8 (B, 3, H, W)`` RGB, the same
    frames before and after redaction; ``boxes``: ``float32 (N, 4)`` xyxy pixels of those frames (e.g. where the
    verification panel found a face in the redacted output) with ``batch_idx`` ``int64 (N,)``. Face i's clean face is
    ``boxes[i]`` cropped from ``clean_images``; the gallery is every embedded clean face of the batch.
    Raises ``ValueError`` when the two image batches differ in shape or ``boxes``/``batch_idx`` disagree in length.
    """
    if clean_images.shape != redacted_images.shape:
        raise ValueError(f"clean images {tuple(clean_images.shape)} and redacted images "
                         f"{tuple(redacted_images.shape)} must have one shape")
    if len(boxes) != len(batch_idx):
        raise ValueError(f"{len(boxes)} boxes but {len(batch_idx)} batch indices")
    n = len(boxes)
    wh = (boxes[:, 2:] - boxes[:, :2]).cpu() if n else torch.zeros(0, 2)
    embedded = wh.amin(1) >= recognizer.min_face_px if n else torch.zeros(0, dtype=torch.bool)
    distance = torch.full((n,), float("nan"))
    rank = torch.zeros(n, dtype=torch.int64)
    matched = torch.zeros(n, dtype=torch.bool)
    idx = embedded.nonzero().flatten()
    if len(idx):
        b, bi = boxes[idx.to(boxes.device)], batch_idx[idx.to(batch_idx.device)]
        with torch.no_grad():
            clean = recognizer.embed(recognizer.crop(clean_images, b, bi)[0])
            red = recognizer.embed(recognizer.crop(redacted_images, b, bi)[0])
            d = recognizer.pairwise_distance(red, clean).cpu()  # (M redacted, M clean)
        own = d.diagonal()
        distance[idx] = own
        rank[idx] = 1 + (d < own[:, None]).sum(1)
        if recognizer.threshold is not None:
            matched[idx] = own < recognizer.threshold
        else:
            matched[idx] = (rank[idx] == 1) & (len(idx) >= 2)
    return CleanMatch(distance, rank, matched, embedded)

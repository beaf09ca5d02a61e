"""Consensus pseudo ground truth from a panel of detectors, for images without annotations.

Rule (documented in README): on the clean, full-resolution image, each panel detector's boxes at its own
default threshold are pooled; a box is kept when at least ``min_votes`` panel detectors (itself included)
have a box overlapping it at IoU >= ``iou``; overlapping kept boxes are merged by NMS (highest score wins).
Rows scored against such boxes carry ``pseudo_gt = True``: the panel's own recall on them is biased upward.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from anonlab.types import Detections, Detector


def consensus(per_detector: list[Detections], batch: int, min_votes: int, iou: float = 0.5) -> Detections:
    """Pool detections of several detectors over one batch and keep boxes confirmed by >= ``min_votes`` of them."""
    if min_votes < 1 or min_votes > max(1, len(per_detector)):
        raise ValueError(f"min_votes must be in [1, {len(per_detector)}] (panel size), got {min_votes}")
    if not per_detector:
        raise ValueError("pseudo ground truth needs at least one panel detector")
    dev = per_detector[0].device
    source = torch.cat([torch.full((len(d),), i, device=dev) for i, d in enumerate(per_detector)])
    pooled = Detections.cat(per_detector)
    if len(pooled) == 0:
        return pooled
    same_image = pooled.batch_idx[:, None] == pooled.batch_idx[None, :]
    overlap = (box_iou(pooled.boxes, pooled.boxes) >= iou) & same_image  # (N, N)
    # votes: number of distinct detectors with an overlapping box
    votes = torch.zeros(len(pooled), len(per_detector), dtype=torch.int64, device=dev)
    votes.scatter_reduce_(1, source[None, :].expand(len(pooled), -1).long(), overlap.long(), reduce="amax")
    keep = votes.sum(1) >= min_votes
    kept = pooled.select(keep)
    k = batched_nms(kept.boxes, kept.scores, kept.batch_idx, iou)
    return kept.select(k)


@torch.inference_mode()
def pseudo_ground_truth(images: Tensor, panel: list[Detector], min_votes: int, iou: float = 0.5) -> Detections:
    """Consensus boxes on ``images`` (uint8 (B,3,H,W)) from ``panel``, each at its own threshold."""
    outs = [det(images).above(det.threshold) for det in panel]
    return consensus(outs, images.shape[0], min_votes, iou)

"""The detector registry and the base shared by dense torch adapters."""

from __future__ import annotations

import torch
from torch import Tensor

from anonlab.detectors._common import clip_boxes, nms_detections
from anonlab.registry import Registry
from anonlab.types import Detections, Detector, check_images

DETECTORS: Registry[Detector] = Registry("detector")


class DenseDetector(Detector):
    """A torch detector defined by ``forward_float``: float RGB ``x (B, 3, H, W)`` in [0, 1] -> dense
    ``scores (B, A)`` in [0, 1] and ``boxes (B, A, 4)`` xyxy in pixels of ``x``, before threshold and NMS
    (differentiable w.r.t. ``x``). ``forward`` is that under ``no_grad``, then clipping, the score floor and
    NMS at ``self.nms_iou`` per image, all batched."""

    nms_iou: float
    objectives = ("heatmap",)

    def dense_scores(self, x: Tensor, objective: str) -> Tensor:
        """The face score map (``heatmap``): ``(B, A)`` from :meth:`forward_float`."""
        self._check_objective(objective)
        return self.forward_float(x)[0]

    def forward_float(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, images: Tensor) -> Detections:
        check_images(images)
        b, _, h, w = images.shape
        if b == 0:
            return Detections.empty(images.device)
        with torch.no_grad():
            scores, boxes = self.forward_float(images.float() / 255.0)
        batch_idx = torch.arange(b, device=images.device).repeat_interleave(scores.shape[1])
        boxes = clip_boxes(boxes.reshape(-1, 4), (h, w))
        return nms_detections(
            boxes, scores.reshape(-1), torch.zeros_like(batch_idx), batch_idx, self.nms_iou, self.score_floor
        )

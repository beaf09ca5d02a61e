"""OpenCV HOG + linear SVM pedestrian detector (Dalal & Triggs), ``getDefaultPeopleDetector()``.

Scores: OpenCV returns the SVM margin ``m`` of each 64x128 window; we report ``sigmoid(margin_scale * m)``.
``0.5`` <=> ``m = 0``, which is OpenCV's own default decision (``hitThreshold=0``), so the default threshold 0.5
keeps what OpenCV would keep. The default slope 3 spreads the people detector's typical margins (about -1 .. 1.5)
over [0.05, 0.99]: the default AP floor 0.05 asks OpenCV for windows with ``m >= -0.98``. The mapping is monotone
and uncalibrated (no Platt fit): compare rankings across detectors, not raw HOG scores with a CNN's.

Grouping: OpenCV's ``groupRectangles`` (``groupThreshold=2``) averages clustered windows and drops clusters with
fewer than 3 members, a hidden second threshold that also discards the score ranking AP needs. We ask OpenCV for
the raw windows (``groupThreshold=0``) and apply score-ranked NMS (torchvision, IoU ``nms_iou``) instead: each
cluster keeps its highest-margin window, unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from anonlab._checks import check_positive, check_range
from anonlab.detectors._common import from_host, host_rgb, xywh_to_xyxy
from anonlab.detectors.base import DETECTORS
from anonlab.types import Detections, Detector, check_images

#: the default people detector's window (H, W); smaller images hold no window and are skipped (see forward)
WINDOW_HW = (128, 64)


def _pair(value: Sequence[int] | int, what: str, minimum: int) -> tuple[int, int]:
    """A (x, y) pair of ints >= minimum from an int or a length-2 sequence (Hydra gives lists)."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair):
        raise ValueError(f"hog_person: {what} must be two ints >= {minimum} (x, y), got {value!r}")
    return pair  # type: ignore[return-value]


@DETECTORS.register("hog_person")
class HOGPerson(Detector):
    """OpenCV HOG person detector on the host, behind the batched ``Detector`` interface.

    ``forward(images uint8 (B, 3, H, W) RGB, any device) -> Detections`` on ``images.device``, boxes xyxy in input
    pixels (the 64x128 detection window, scaled, so boxes are larger than the person), labels 0 ("person").
    One device-to-host copy per batch; OpenCV then runs per image (it has no batched API).

    Params: ``win_stride`` (x, y) window step in pixels; ``padding`` (x, y) context added around the image, so
    people at the border can be found; ``scale`` pyramid step (> 1); ``nms_iou`` IoU of the NMS that replaces
    OpenCV's grouping; ``margin_scale`` slope of the margin -> score sigmoid (see the module docstring).
    """

    kind = "person"
    classes = ("person",)
    capabilities = frozenset({"cpu_only"})
    default_threshold = 0.5
    score_note = "sigmoid(3 * SVM margin); 0.5 = margin 0 = OpenCV's default hitThreshold"

    def __init__(
        self,
        threshold: float | None = None,
        score_floor: float | None = None,
        win_stride: Sequence[int] = (8, 8),
        padding: Sequence[int] = (8, 8),
        scale: float = 1.05,
        nms_iou: float = 0.45,
        margin_scale: float = 3.0,
    ) -> None:
        super().__init__(threshold, score_floor)
        self.win_stride = _pair(win_stride, "win_stride", 1)
        self.padding = _pair(padding, "padding", 0)
        self.scale = check_range("scale", scale, 1.0, lo_open=True, where="hog_person", note="pyramid step")
        self.nms_iou = check_range("nms_iou", nms_iou, 0.0, 1.0, lo_open=True, where="hog_person")
        self.margin_scale = check_positive("margin_scale", margin_scale, where="hog_person")
        # the SVM margin OpenCV must reach for a window to score >= score_floor (logit of the floor)
        f = min(max(self.score_floor, 1e-6), 1.0 - 1e-6)
        self.hit_threshold = math.log(f / (1.0 - f)) / self.margin_scale

        import cv2

        self._hog = cv2.HOGDescriptor()  # default: 64x128 window, 8x8 cells, 16x16 blocks, 9 bins
        self._hog.setSVMDetector(cv2.HOGDescriptor.getDefaultPeopleDetector())

    def margins_to_scores(self, margins: Tensor) -> Tensor:
        """SVM margins (any shape, float) -> scores in [0, 1]: ``sigmoid(margin_scale * margin)``."""
        return torch.sigmoid(self.margin_scale * margins)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Detections:
        check_images(images)
        device = images.device
        b, _, h, w = images.shape
        if b == 0 or h < WINDOW_HW[0] or w < WINDOW_HW[1]:
            # No 64x128 window fits (also: OpenCV 4.14's detectMultiScale corrupts the heap on such inputs).
            return Detections.empty(device)
        host = host_rgb(images)  # the one device-to-host copy; (B, H, W, RGB)
        boxes, margins = [], []
        for i in range(b):  # OpenCV is per image
            bgr = host[i, :, :, ::-1].copy()  # contiguous BGR copy; the caller's tensor is untouched
            found, weights = self._hog.detectMultiScale(
                bgr,
                hitThreshold=self.hit_threshold,
                winStride=self.win_stride,
                padding=self.padding,
                scale=self.scale,
                groupThreshold=0,  # raw windows; NMS below (see module docstring)
            )
            boxes.append(xywh_to_xyxy(torch.from_numpy(np.asarray(found, dtype=np.int32).reshape(-1, 4)).float()))
            margins.append(torch.from_numpy(np.asarray(weights).reshape(-1)).float())
        # one sigmoid over the whole batch: vectorised kernels round the tail of a tensor differently, so scores
        # would depend on how the batch is split
        scores = self.margins_to_scores(torch.cat(margins)).split([len(m) for m in margins])
        return from_host(boxes, scores, (h, w), device, self.score_floor, nms_iou=self.nms_iou)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, win_stride={self.win_stride}, padding={self.padding}, scale={self.scale}, "
            f"nms_iou={self.nms_iou}, margin_scale={self.margin_scale}"
        )

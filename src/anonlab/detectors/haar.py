"""OpenCV's Viola-Jones Haar cascade, ``haarcascade_frontalface_default.xml`` from ``cv2.data.haarcascades``.

Pipeline per image (OpenCV has no batched API): RGB -> gray with ``cv2.cvtColor`` (no histogram equalisation,
as ``detectMultiScale`` itself does not equalise), then ``detectMultiScale3(..., outputRejectLevels=True)``.

Scores: a window is accepted when it passes all 25 stages; OpenCV then groups accepted windows and keeps clusters
of more than ``min_neighbors`` windows (OpenCV's own decision). With ``outputRejectLevels`` each cluster also
carries a level weight: the largest *last-stage sum* among its windows, which is >= the last stage's threshold
``t`` (-2.993 in this cascade) for every accepted window. We report ``sigmoid(weight - t)``: monotone in the
weight, ``0.5`` <=> a window that passed the last stage by a zero margin, so every detection OpenCV returns scores
in [0.5, 1] and the default threshold 0.5 keeps exactly what OpenCV keeps. Nothing scores below 0.5: for Haar the
AP curve ends at OpenCV's cluster rule (``min_neighbors``), which the score cannot go below. Uncalibrated: true
faces score ~0.9998 (margin ~8.7), a background false positive on zidane.jpg 0.996 (margin 5.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from anonlab._checks import check_int, check_range
from anonlab.detectors._common import from_host, host_rgb, xywh_to_xyxy
from anonlab.detectors.base import DETECTORS
from anonlab.types import Detections, Detector, check_images

CASCADE_FILE = "haarcascade_frontalface_default.xml"


def _size_hw(value: Sequence[int] | int, what: str) -> tuple[int, int]:
    """An (H, W) pair of ints >= 1 from an int or a length-2 sequence (Hydra gives lists)."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"haar: {what} must be two ints >= 1 (H, W), got {value!r}")
    return pair  # type: ignore[return-value]


def cascade_path() -> Path:
    """Path of OpenCV's shipped frontal-face cascade; raises ``FileNotFoundError`` naming it if absent."""
    import cv2

    path = Path(cv2.data.haarcascades) / CASCADE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"haar: {path} not found; this opencv-python build ships no Haar cascades")
    return path


@DETECTORS.register("haar")
class HaarFace(Detector):
    """OpenCV Haar cascade (frontal faces) on the host, behind the batched ``Detector`` interface.

    ``forward(images uint8 (B, 3, H, W) RGB, any device) -> Detections`` on ``images.device``: boxes xyxy in input
    pixels, scores ``sigmoid(last-stage margin)`` in [0.5, 1] (module docstring), labels 0 ("face").
    One device-to-host copy per batch; OpenCV then runs per image. Frames smaller than the cascade's 24x24 window
    return no detections without calling OpenCV.

    Params: ``scale_factor`` pyramid step (> 1); ``min_neighbors`` windows a cluster needs beyond the first
    (>= 0; 0 returns ungrouped windows); ``min_size`` (H, W) smallest face searched, in pixels (the cascade's
    window is 24x24, so smaller values change nothing).
    """

    kind = "face"
    classes = ("face",)
    capabilities = frozenset({"cpu_only"})
    default_threshold = 0.5
    score_note = "sigmoid(last-stage sum - stage threshold), >= 0.5 for all OpenCV detections; min_neighbors decides"

    def __init__(
        self,
        threshold: float | None = None,
        score_floor: float | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: Sequence[int] | int = (24, 24),
    ) -> None:
        super().__init__(threshold, score_floor)
        self.scale_factor = check_range("scale_factor", scale_factor, 1.0, lo_open=True, where="haar",
                                        note="pyramid step")
        self.min_neighbors = check_int("min_neighbors", min_neighbors, 0, where="haar")
        self.min_size = _size_hw(min_size, "min_size")

        import cv2

        self.cascade_path = cascade_path()
        self._cascade = cv2.CascadeClassifier(str(self.cascade_path))
        if self._cascade.empty():
            raise RuntimeError(f"haar: OpenCV could not load the cascade {self.cascade_path}")
        self.window_hw, self.last_stage_threshold = _cascade_meta(self.cascade_path)

    def weights_to_scores(self, level_weights: Tensor) -> Tensor:
        """OpenCV level weights (last-stage sums, float) -> scores: ``sigmoid(weight - last stage threshold)``."""
        return torch.sigmoid(level_weights - self.last_stage_threshold)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Detections:
        check_images(images)
        device = images.device
        b, _, h, w = images.shape
        if b == 0 or h < self.window_hw[0] or w < self.window_hw[1]:
            return Detections.empty(device)
        import cv2

        host = host_rgb(images)  # the one device-to-host copy; the caller's is untouched
        boxes, scores = [], []
        for i in range(b):  # OpenCV is per image
            gray = cv2.cvtColor(host[i], cv2.COLOR_RGB2GRAY)
            found, _levels, level_weights = self._cascade.detectMultiScale3(
                gray,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(self.min_size[1], self.min_size[0]),  # OpenCV wants (w, h)
                outputRejectLevels=True,
            )
            boxes.append(xywh_to_xyxy(torch.from_numpy(np.asarray(found, dtype=np.int32).reshape(-1, 4)).float()))
            scores.append(self.weights_to_scores(torch.as_tensor(np.asarray(level_weights), dtype=torch.float32)
                                                 .reshape(-1)))
        return from_host(boxes, scores, (h, w), device, self.score_floor)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, scale_factor={self.scale_factor}, min_neighbors={self.min_neighbors}, "
            f"min_size={self.min_size}"
        )


def _cascade_meta(path: Path) -> tuple[tuple[int, int], float]:
    """(window (H, W), last stage threshold) read from a cascade XML (new format, as OpenCV ships)."""
    import cv2

    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    try:
        node = fs.getNode("cascade")
        stages = node.getNode("stages")
        if node.empty() or stages.empty() or stages.size() == 0:
            raise RuntimeError(f"haar: {path} has no cascade/stages node (old-format cascades are not supported)")
        window = (int(node.getNode("height").real()), int(node.getNode("width").real()))
        last = float(stages.at(stages.size() - 1).getNode("stageThreshold").real())
    finally:
        fs.release()
    return window, last

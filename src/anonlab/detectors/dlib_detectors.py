"""dlib's two face detectors: the HOG + linear SVM ``get_frontal_face_detector()`` and the MMOD CNN
(``mmod_human_face_detector.dat``, shipped by the ``face_recognition_models`` package).

Both run on the host (dlib here is built without CUDA and without BLAS): one device-to-host copy per batch, boxes
back on the images' device. dlib rectangles have inclusive right/bottom pixels: ``xyxy = (left, top, right + 1,
bottom + 1)``, clipped to the image (dlib reports boxes that reach outside it).

Scores: both detectors output a linear detection score ``s`` whose decision is ``s > 0`` (dlib's default
``adjust_threshold=0``). We report ``sigmoid(margin_scale * s)``: monotone, ``0.5`` <=> ``s = 0``, so the default
threshold 0.5 keeps exactly what dlib keeps. Slope 3 (as in ``hog_person``) spreads the typical scores
(HOG: faces ~0.2 .. 1.5, background > -1; MMOD: faces ~0.9 .. 1.1) over [0.05, 0.99]. Uncalibrated.

- ``dlib_hog`` asks dlib for every window with ``s >= logit(score_floor) / margin_scale`` (``adjust_threshold``),
  so the low scores AP needs are real detector outputs. dlib's greedy NMS only lets a window be suppressed by a
  higher-scored one, so the detections above the default threshold equal dlib's default ones.
- ``dlib_cnn``: dlib's Python API has no ``adjust_threshold`` for the CNN; it returns only ``s > 0``, so no score
  below 0.5 appears and its AP curve ends at dlib's decision.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from anonlab import weights
from anonlab._checks import check_int, check_positive
from anonlab.detectors._common import from_host, host_rgb
from anonlab.detectors.base import DETECTORS
from anonlab.types import Detections, Detector, check_images

MMOD_FILE = ("face_recognition_models", "models", "mmod_human_face_detector.dat")
#: dlib's MMOD CNN raises or corrupts the heap on frames whose short side (after upsampling) is below ~10 px;
#: faces it can find are larger than ~40 px, so frames whose upsampled short side is below this are skipped
CNN_MIN_SIDE = 40


def _rects_to_xyxy(rects) -> Tensor:
    """dlib rectangles (inclusive right/bottom) -> float32 (N, 4) xyxy, half-open like every other box here."""
    xyxy = [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects]
    return torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4)


@DETECTORS.register("dlib_hog")
class DlibHOG(Detector):
    """dlib's HOG + linear SVM frontal face detector (5 sub-detectors: frontal, left/right profile, rotated).

    ``forward(images uint8 (B, 3, H, W) RGB, any device) -> Detections`` on ``images.device``, per image on the host.
    ``upsample``: times dlib doubles the image first (0 finds faces from ~70 px, 1 from ~35 px, measured on a
    shrunk astronaut portrait; each step costs ~4x the time). ``margin_scale``: slope of the score map (module
    docstring).
    """

    kind = "face"
    classes = ("face",)
    capabilities = frozenset({"cpu_only"})
    default_threshold = 0.5
    score_note = "sigmoid(3 * dlib HOG SVM score); 0.5 = score 0 = dlib's default decision"

    def __init__(
        self,
        threshold: float | None = None,
        score_floor: float | None = None,
        upsample: int = 1,
        margin_scale: float = 3.0,
    ) -> None:
        super().__init__(threshold, score_floor)
        self.upsample = check_int("upsample", upsample, 0, where="dlib_hog")
        self.margin_scale = check_positive("margin_scale", margin_scale, where="dlib_hog")
        # the SVM score dlib must reach for a window to score >= score_floor (logit of the floor)
        f = min(max(self.score_floor, 1e-6), 1.0 - 1e-6)
        self.adjust_threshold = math.log(f / (1.0 - f)) / self.margin_scale

        import dlib

        self._detector = dlib.get_frontal_face_detector()

    @torch.no_grad()
    def forward(self, images: Tensor) -> Detections:
        check_images(images)
        device = images.device
        b, _, h, w = images.shape
        if b == 0:
            return Detections.empty(device)
        host = host_rgb(images)
        boxes, scores = [], []
        for i in range(b):  # dlib is per image
            rects, svm_scores, _which = self._detector.run(host[i], self.upsample, self.adjust_threshold)
            boxes.append(_rects_to_xyxy(rects))
            scores.append(torch.sigmoid(self.margin_scale * torch.tensor(svm_scores, dtype=torch.float32)))
        return from_host(boxes, scores, (h, w), device, self.score_floor)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, upsample={self.upsample}, margin_scale={self.margin_scale}"


@DETECTORS.register("dlib_cnn")
class DlibCNN(Detector):
    """dlib's MMOD CNN face detector (``mmod_human_face_detector.dat`` from ``face_recognition_models``).

    ``forward(images uint8 (B, 3, H, W) RGB, any device) -> Detections`` on ``images.device``. Slow on CPU (dlib has
    no BLAS here): on 2 cores ~7 s for a 1080x810 frame with ``upsample=0``, ~28 s with ``upsample=1``; a
    2160x3840 frame takes ~77 s and ~9 GB of RAM at ``upsample=0``. Hence the defaults.

    Params: ``upsample`` times dlib doubles the frame first (0 finds faces from ~70 px, 1 from ~35 px, measured on
    a shrunk astronaut portrait; each step costs ~4x the time); ``max_side`` if set, frames whose long side exceeds
    it are shrunk first (antialiased bilinear, in torch on the images' device; boxes are mapped back), trading small
    faces for time and memory; ``max_batch_megapixels``
    how many (upsampled) megapixels go into one batched dlib call (dlib needs ~1 GB per megapixel; at least one
    image per call); ``margin_scale`` slope of the score map (module docstring).
    """

    kind = "face"
    classes = ("face",)
    capabilities = frozenset({"cpu_only"})
    default_threshold = 0.5
    score_note = "sigmoid(3 * MMOD confidence); dlib returns only confidence > 0, so scores are >= 0.5"

    def __init__(
        self,
        threshold: float | None = None,
        score_floor: float | None = None,
        upsample: int = 0,
        max_side: int | None = None,
        max_batch_megapixels: float = 2.0,
        margin_scale: float = 3.0,
    ) -> None:
        super().__init__(threshold, score_floor)
        self.upsample = check_int("upsample", upsample, 0, where="dlib_cnn")
        if max_side is not None:
            check_int("max_side", max_side, CNN_MIN_SIDE, where="dlib_cnn", note="pixels, or None")
        self.max_side = max_side
        self.max_batch_megapixels = check_positive("max_batch_megapixels", max_batch_megapixels, where="dlib_cnn")
        self.margin_scale = check_positive("margin_scale", margin_scale, where="dlib_cnn")

        import dlib

        self.weights_path = weights.package_file(*MMOD_FILE)  # found without importing face_recognition_models
        try:
            self._net = dlib.cnn_face_detection_model_v1(str(self.weights_path))
        except RuntimeError as e:
            raise RuntimeError(f"dlib_cnn: dlib could not load {self.weights_path}: {e}") from e

    def working_size(self, size_hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) the frame is shrunk to before dlib (unchanged unless its long side exceeds ``max_side``)."""
        h, w = size_hw
        if self.max_side is None or max(h, w) <= self.max_side:
            return h, w
        r = self.max_side / max(h, w)
        return max(1, round(h * r)), max(1, round(w * r))

    @torch.no_grad()
    def forward(self, images: Tensor) -> Detections:
        check_images(images)
        device = images.device
        b, _, h, w = images.shape
        hw = self.working_size((h, w))
        if b == 0 or min(hw) * 2**self.upsample < CNN_MIN_SIDE:  # see CNN_MIN_SIDE
            return Detections.empty(device)
        small = images
        if hw != (h, w):  # a new tensor; the caller's is untouched
            x = F.interpolate(images.float(), size=hw, mode="bilinear", align_corners=False, antialias=True)
            small = x.round_().clamp_(0, 255).to(torch.uint8)
        host = host_rgb(small)
        per_call = max(1, int(self.max_batch_megapixels * 1e6 // (hw[0] * hw[1] * 4**self.upsample)))
        found = []
        for start in range(0, b, per_call):  # dlib batches a list of same-size images
            chunk = [host[i] for i in range(start, min(b, start + per_call))]
            found.extend(self._net(chunk, self.upsample, batch_size=len(chunk)))
        boxes, scores = [], []
        for dets in found:
            boxes.append(_rects_to_xyxy([d.rect for d in dets]))
            scores.append(torch.tensor([d.confidence for d in dets], dtype=torch.float32))
        scale = torch.tensor([w / hw[1], h / hw[0], w / hw[1], h / hw[0]])
        boxes = [bx * scale for bx in boxes]
        scores = [torch.sigmoid(self.margin_scale * s) for s in scores]
        return from_host(boxes, scores, (h, w), device, self.score_floor)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, upsample={self.upsample}, max_side={self.max_side}, "
            f"max_batch_megapixels={self.max_batch_megapixels}, margin_scale={self.margin_scale}"
        )

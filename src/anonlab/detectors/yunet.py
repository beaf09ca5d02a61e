"""YuNet (OpenCV Zoo ``face_detection_yunet_2023mar.onnx``), run batched in torch through onnx2torch.

OpenCV's ``cv2.FaceDetectorYN`` runs this graph one image at a time, and opencv-python 4.14's DNN module returns
garbage once the input size changes between calls. The graph itself is fully convolutional (its only Reshapes
are ``[1, -1, k]`` and its Resizes use fixed scale factors), so after onnx2torch it accepts any H, W that are
multiples of 32, and a batch: the ``[1, -1, k]`` reshape flattens the batch into the anchor axis batch-major,
so ``reshape(B, -1, k)`` recovers it exactly.

Pre/post-processing follows ``FaceDetectorYN`` (OpenCV ``modules/objdetect/src/face_detect.cpp``):

- input BGR float 0..255, no normalisation, zero-padded at the bottom/right to multiples of 32;
- per stride s in (8, 16, 32), anchor (r, c) row-major: ``score = sqrt(clip(cls) * clip(obj))``,
  ``cx, cy = (c + bbox[0]) * s, (r + bbox[1]) * s``, ``w, h = exp(bbox[2:4]) * s``;
- greedy NMS at IoU 0.3.

YuNet finds faces of about 10-300 px, so frames whose long side exceeds ``max_side`` (default 640) are first
shrunk (bilinear with antialiasing, aspect kept) and the boxes mapped back to input pixels.

Default threshold 0.6 (OpenCV Zoo's demo uses 0.9). Measured: the real faces in ultralytics' bus.jpg and
zidane.jpg, skimage's astronaut and matplotlib's grace_hopper score 0.88-0.94, the strongest background
responses about 0.30-0.32; 0.9 would drop one of bus.jpg's two faces (0.89), 0.6 sits between the two groups.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from anonlab import weights as _weights
from anonlab._checks import check_int, check_range
from anonlab.detectors._common import OrtBackend, onnx_to_torch
from anonlab.detectors.base import DETECTORS, DenseDetector

STRIDES = (8, 16, 32)
DIVISOR = 32


def network_size(size_hw: tuple[int, int], max_side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """For an input of ``size_hw``: the resized size (H', W') with long side <= ``max_side`` (never enlarged),
    and the padded network input size, each side rounded up to a multiple of 32."""
    h, w = size_hw
    r = min(1.0, max_side / max(h, w, 1))
    rh, rw = max(1, round(h * r)), max(1, round(w * r))
    return (rh, rw), (math.ceil(rh / DIVISOR) * DIVISOR, math.ceil(rw / DIVISOR) * DIVISOR)


def decode(outputs: tuple[Tensor, ...], batch: int, size_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Dense YuNet decode of the 12 graph outputs (cls, obj, bbox, kps for strides 8/16/32, in graph order).

    ``size_hw`` is the padded network input (H, W). Returns scores ``(B, A)`` in [0, 1] and boxes ``(B, A, 4)``
    float32 xyxy in network-input pixels, A = sum over strides of (H/s)(W/s). Differentiable.
    """
    h, w = size_hw
    n = len(STRIDES)
    scores, boxes = [], []
    for i, s in enumerate(STRIDES):
        cls, obj, bbox = (outputs[i + k * n].reshape(batch, -1, d) for k, d in ((0, 1), (1, 1), (2, 4)))
        rows, cols = h // s, w // s
        gy, gx = torch.meshgrid(
            torch.arange(rows, device=bbox.device, dtype=bbox.dtype),
            torch.arange(cols, device=bbox.device, dtype=bbox.dtype),
            indexing="ij",
        )
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # (A_s, 2) anchor (c, r), row-major
        centre = (grid + bbox[..., :2]) * s
        half = bbox[..., 2:].exp() * (s / 2)
        boxes.append(torch.cat([centre - half, centre + half], dim=-1))
        scores.append((cls[..., 0].clamp(0, 1) * obj[..., 0].clamp(0, 1)).sqrt())
    return torch.cat(scores, dim=1), torch.cat(boxes, dim=1)


@DETECTORS.register("yunet")
class YuNet(DenseDetector):
    """OpenCV Zoo YuNet 2023mar as a batched torch module.

    ``forward(images)``: ``uint8 (B, 3, H, W)`` RGB on any device -> ``Detections`` on that device, in input pixels,
    every face with score >= ``score_floor`` after NMS. ``weights``: path to the ONNX file (else found through
    ``anonlab.weights.resolve``; the sha256 is checked either way).
    """

    kind = "face"
    classes = ("face",)
    capabilities = frozenset({"differentiable"})
    default_threshold = 0.6
    score_note = "sqrt(cls * obj) in [0, 1] as OpenCV's FaceDetectorYN computes it; its demo uses 0.9"

    def __init__(
        self, threshold: float | None = None, score_floor: float | None = None, nms_iou: float = 0.3,
        max_side: int = 640, weights: str | None = None,
    ) -> None:
        super().__init__(threshold, score_floor)
        self.nms_iou = check_range("nms_iou", nms_iou, 0.0, 1.0, lo_open=True, where="yunet")
        self.max_side = check_int("max_side", max_side, DIVISOR, where="yunet", note="pixels")
        self.weights_path = _weights.resolve(_weights.YUNET, weights)
        self._load()

    def _load(self) -> None:
        self.net = onnx_to_torch(self.weights_path, "yunet")

    def network(self, x: Tensor) -> tuple[Tensor, ...]:
        """The graph alone on float BGR 0..255 ``(B, 3, H', W')`` (multiples of 32): its 12 outputs, graph order."""
        return self.run_net(self.net, x)

    def forward_float(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Dense predictions for float ``x (B, 3, H, W)`` RGB in [0, 1], before threshold and NMS.

        Returns scores ``(B, A)`` in [0, 1] (one per anchor of strides 8/16/32 on the resized, padded frame) and
        boxes ``(B, A, 4)`` float32 xyxy in pixels of ``x`` (not clipped). Differentiable w.r.t. ``x``.
        """
        b, _, h, w = x.shape
        (rh, rw), (ph, pw) = network_size((h, w), self.max_side)
        if (rh, rw) != (h, w):  # (resized first: the flip and scaling below then touch the small frame only)
            x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)
        x = x.flip(1) * 255.0  # RGB [0, 1] -> BGR 0..255
        x = F.pad(x, (0, pw - rw, 0, ph - rh))  # zeros bottom/right, as FaceDetectorYN pads
        scores, boxes = decode(self.network(x), b, (ph, pw))
        return scores, boxes / boxes.new_tensor([rw / w, rh / h, rw / w, rh / h])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nms_iou={self.nms_iou}, max_side={self.max_side}"


@DETECTORS.register("yunet_ort")
class YuNetORT(OrtBackend, YuNet):
    """The same YuNet (graph, pre/post-processing and NMS) with the graph run by onnxruntime, batch, height and width
    made dynamic: the faster path on CPU (measured: 3.1 vs 28 ms for five 160 px windows, 5.6 vs 44 ms for a
    640x384 frame, one thread, 2026-12-01). Not differentiable; the provider follows the input's device
    (:class:`~anonlab.detectors._common.OrtGraph`)."""

    ort_input_dims = ["B", 3, "H", "W"]

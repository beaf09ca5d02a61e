"""Helpers shared by detector adapters: ONNX loading (explicit backends, no fallback), resize/letterbox, NMS."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from anonlab.types import Detections


def onnx_to_torch(path: Path, name: str, opset: int | None = None) -> nn.Module:
    """Convert an ONNX file to a frozen, eval-mode torch module with onnx2torch (a differentiable path).

    ``opset``: first upgrade the graph to this opset with ONNX's own version converter (for old graphs that
    onnx2torch cannot read as shipped). Raises ``RuntimeError`` naming the file if onnx or onnx2torch cannot
    read/upgrade/convert it; never falls back.
    """
    import onnx
    from onnx import version_converter
    from onnx2torch import convert

    try:
        model = onnx.load(str(path))
        if opset is not None:
            model = version_converter.convert_version(model, opset)
        module = convert(model)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        upgrade = f" (opset -> {opset})" if opset is not None else ""
        raise RuntimeError(f"{name}: could not convert ONNX model {path}{upgrade} to torch: {e}") from e
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def ort_session(path: Path, name: str, device: torch.device | str = "cpu", model: bytes | None = None):
    """An onnxruntime session on an explicitly chosen provider (CPU, or CUDA when ``device`` is cuda), for the
    ONNX file ``path`` (or the serialized ``model`` made from it).

    If the requested provider is not available the error says so; there is no silent CPU fallback.
    """
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    dev = torch.device(device)
    provider = "CUDAExecutionProvider" if dev.type == "cuda" else "CPUExecutionProvider"
    if provider not in ort.get_available_providers():
        raise RuntimeError(
            f"{name}: onnxruntime has no {provider} (available: {', '.join(ort.get_available_providers())})"
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()  # as many as torch uses: no oversubscription
    options = {"device_id": dev.index or 0} if dev.type == "cuda" else {}
    try:
        sess = ort.InferenceSession(model if model is not None else str(path), sess_options=opts,
                                    providers=[(provider, options)])
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise RuntimeError(f"{name}: onnxruntime could not load {path}: {e}") from e
    if sess.get_providers()[0] != provider:
        raise RuntimeError(f"{name}: onnxruntime did not start {provider} for {path} (got {sess.get_providers()})")
    return sess


def letterbox(x: Tensor, size_hw: tuple[int, int], pad_value: float = 114.0) -> tuple[Tensor, float]:
    """Resize float (B, 3, H, W) keeping aspect ratio into the top-left of ``size_hw``; return (batch, ratio).

    A box in the letterboxed frame maps back to the input by dividing by ``ratio``.
    """
    h, w = x.shape[-2:]
    th, tw = size_hw
    r = min(th / h, tw / w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    resized = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=r < 1)
    out = x.new_full((x.shape[0], 3, th, tw), pad_value)
    out[:, :, :nh, :nw] = resized
    return out, r


def nms_detections(
    boxes: Tensor, scores: Tensor, labels: Tensor, batch_idx: Tensor, iou: float, floor: float
) -> Detections:
    """Keep scores >= floor, then NMS per (image, label); returns ``Detections`` sorted by image then score."""
    keep = scores >= floor
    boxes, scores, labels, batch_idx = boxes[keep], scores[keep], labels[keep], batch_idx[keep]
    groups = batch_idx * (int(labels.max()) + 1 if labels.numel() else 1) + labels
    k = batched_nms(boxes.float(), scores.float(), groups, iou)
    order = torch.argsort(batch_idx[k], stable=True)
    k = k[order]
    return Detections(boxes[k].float().contiguous(), scores[k].float(), labels[k].long(), batch_idx[k].long())


def clip_boxes(boxes: Tensor, size_hw: tuple[int, int]) -> Tensor:
    h, w = size_hw
    return torch.stack(
        [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1
    )


class quiet_onnx2torch(warnings.catch_warnings):
    """Silence onnx2torch's known torch deprecation warning (non-tuple Slice indexing) around one forward,
    without touching the global warning filters."""

    def __enter__(self):
        out = super().__enter__()
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence for multidimensional indexing")
        return out

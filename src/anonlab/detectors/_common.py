"""Helpers shared by detector adapters: ONNX loading (explicit backends, no fallback), resize/letterbox, NMS, and the
host round trip of the CPU-only detectors (OpenCV, dlib, facenet-pytorch's numpy outputs)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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


def ort_model(path: Path, input_dims: list | None = None) -> bytes:
    """The ONNX file ``path`` prepared for onnxruntime, serialized: its weights taken out of the graph inputs (so
    onnxruntime may fold and fuse them: conv + BN + activation) and, with ``input_dims``, the first input's
    dimensions set (a string makes one dynamic; ``onnx.tools.update_model_dims``) and every output's made dynamic.
    Raises ``RuntimeError`` naming the file."""
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    try:
        model = onnx.load(str(path))
        weights_ = {i.name for i in model.graph.initializer}
        keep = [i for i in model.graph.input if i.name not in weights_]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        if input_dims is not None:
            outputs = {o.name: [-1] * len(o.type.tensor_type.shape.dim) for o in model.graph.output}
            model = update_inputs_outputs_dims(model, {keep[0].name: input_dims}, outputs)
        return model.SerializeToString()
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise RuntimeError(f"could not prepare ONNX model {path} for onnxruntime: {e}") from e


class OrtGraph:
    """An ONNX graph run by onnxruntime, the faster runtime on CPU for small convolutional detectors (fused
    convolutions; the torch graphs of onnx2torch run op by op): ``graph(x float32 (B, 3, H, W))`` -> the graph's
    outputs as float32 tensors on ``x``'s device. One session per device, made on first use by :func:`ort_session`
    (the provider follows the device, no fallback; as many threads as torch then uses). ``per_image``: the graph
    has batch 1 baked in, so it runs image by image and the outputs are concatenated on their first axis. Not
    differentiable.
    """

    def __init__(self, path: Path, name: str, model: bytes, per_image: bool = False) -> None:
        self.path, self.name, self.model, self.per_image = path, name, model, per_image
        self._sessions: dict[str, object] = {}

    def __call__(self, x: Tensor) -> tuple[Tensor, ...]:
        key = str(x.device)
        sess = self._sessions.get(key)
        if sess is None:
            sess = self._sessions[key] = ort_session(self.path, self.name, x.device, self.model)
        name = sess.get_inputs()[0].name
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        if not self.per_image:
            return tuple(torch.from_numpy(o).to(x.device) for o in sess.run(None, {name: arr}))
        runs = [sess.run(None, {name: arr[i : i + 1]}) for i in range(arr.shape[0])]
        return tuple(torch.from_numpy(np.concatenate(outs)).to(x.device) for outs in zip(*runs))


class OrtBackend:
    """Mixin making a torch detector's ``_ort`` twin: the same pre/post-processing and NMS, the graph run by
    onnxruntime (:class:`OrtGraph`). The detector class it precedes must load its graph in ``_load()`` from
    ``self.weights_path`` and run it through ``network(x)``; the twin sets ``ort_input_dims`` (the input dims made
    dynamic, :func:`ort_model`; None: the graph as exported) and ``ort_per_image`` (batch 1 baked in). Not
    differentiable: no capabilities, no objectives."""

    capabilities: frozenset = frozenset()
    objectives: tuple = ()  # onnxruntime: no gradient to an attack
    ort_input_dims: list | None = None
    ort_per_image: bool = False

    def _load(self) -> None:
        self.graph = OrtGraph(self.weights_path, self.name, ort_model(self.weights_path, self.ort_input_dims),
                              per_image=self.ort_per_image)

    def network(self, x: Tensor) -> tuple[Tensor, ...]:
        return self.graph(x)


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


def host_rgb(images: Tensor) -> np.ndarray:
    """uint8 (B, 3, H, W) RGB on any device -> a new numpy ``uint8 (B, H, W, 3)`` RGB on the host, in one copy
    (the one device-to-host transfer of a CPU-only detector's batch; the caller's tensor is untouched).

    Written into a fresh host tensor so every stride is the standard one: ``.contiguous()`` keeps odd strides on
    size-1 dimensions (a 1-pixel-wide frame), which dlib rejects ("the stride of the columns dimension must be 3").
    """
    b, _, h, w = images.shape
    host = torch.empty((b, h, w, 3), dtype=torch.uint8)
    host.copy_(images.permute(0, 2, 3, 1))
    return host.numpy()


def xywh_to_xyxy(xywh: Tensor) -> Tensor:
    """(N, 4) boxes ``x, y, w, h`` (OpenCV's rectangles) -> ``x1, y1, x2, y2``, same dtype."""
    return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)


def from_host(boxes: Sequence[Tensor], scores: Sequence[Tensor], size_hw: tuple[int, int], device: torch.device,
              floor: float, nms_iou: float | None = None) -> Detections:
    """Per-image host results -> one ``Detections`` on ``device`` (the way back of the host round trip).

    ``boxes[i]`` ``(N_i, 4)`` float xyxy pixels and ``scores[i]`` ``(N_i,)`` float in [0, 1] for image i of the
    batch (one entry per image, empty tensors where nothing was found); size_hw (H, W) of the images. Boxes are
    clipped to the image, labels are 0 (the detector's one class), ``batch_idx`` is i. Scores below ``floor`` are
    dropped; ``nms_iou`` (if given) then runs NMS per image (:func:`nms_detections`). One host-to-device copy.
    """
    counts = torch.tensor([len(s) for s in scores], dtype=torch.int64)
    if int(counts.sum()) == 0:
        return Detections.empty(device)
    batch_idx = torch.repeat_interleave(torch.arange(len(scores)), counts)
    boxes_t = clip_boxes(torch.cat(list(boxes)).float().reshape(-1, 4), size_hw)
    scores_t = torch.cat(list(scores)).float()
    labels = torch.zeros_like(batch_idx)
    if nms_iou is not None:
        dets = nms_detections(boxes_t, scores_t, labels, batch_idx, nms_iou, floor)
    else:
        dets = Detections(boxes_t, scores_t, labels, batch_idx).above(floor)
    return dets.to(device)


def unbake_reshapes(module: nn.Module, name: str) -> nn.Module:
    """Rewrite the batch-1 constant reshapes an ONNX export baked into a converted fx ``GraphModule`` (onnx2torch),
    so any batch runs (YOLOX-nano's head flattens; NanoDet's channel shuffles and head flattens; MobileFaceNet's
    embedding flatten).

    ``[1, g, c, h, w]`` -> ``x.unflatten(1, (g, c))``; ``[1, -1, h, w]`` -> ``x.flatten(1, 2)`` (after the shuffle's
    transpose, the input is 5-D); ``[1, C, -1]`` -> ``x.flatten(2)``; ``[1, -1]`` -> ``x.flatten(1)`` (PyTorch's
    ``x.view(x.size(0), -1)`` exported at batch 1). Any other reshape raises ``RuntimeError`` naming it. Returns
    ``module``, recompiled.
    """
    from onnx2torch.node_converters.reshape import OnnxReshape

    graph = module.graph
    fixed = 0
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(module.get_submodule(node.target), OnnxReshape):
            continue
        src, shape_node = node.args
        shape = _fx_constant(module, shape_node)
        s = [int(v) for v in shape] if shape is not None and shape.ndim == 1 else None
        if s is not None and len(s) == 5 and s[0] == 1 and -1 not in s:
            fn, args = torch.unflatten, (src, 1, (s[1], s[2]))
        elif s is not None and len(s) == 4 and s[:2] == [1, -1]:
            fn, args = torch.flatten, (src, 1, 2)
        elif s is not None and len(s) == 3 and s[0] == 1 and s[2] == -1:
            fn, args = torch.flatten, (src, 2)
        elif s == [1, -1]:
            fn, args = torch.flatten, (src, 1)
        else:
            raise RuntimeError(f"{name}: unexpected reshape {node.target} to {s}; expected a batch-1 channel shuffle "
                               f"or a head/embedding flatten")
        with graph.inserting_after(node):
            new = graph.call_function(fn, args)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        fixed += 1
    if fixed == 0:
        raise RuntimeError(f"{name}: found no batch-1 reshape to rewrite; is this the expected ONNX export?")
    graph.eliminate_dead_code()
    graph.lint()
    module.recompile()
    return module


def _fx_constant(module: nn.Module, node) -> Tensor | None:
    """The tensor a ``get_attr`` node reads, or an ONNX ``Constant`` node's (onnx2torch ``OnnxConstant``) value."""
    if getattr(node, "op", None) == "call_module":
        from onnx2torch.node_converters.constant import OnnxConstant

        sub = module.get_submodule(node.target)
        return sub.value if isinstance(sub, OnnxConstant) and isinstance(sub.value, Tensor) else None
    if getattr(node, "op", None) != "get_attr":
        return None
    obj = module
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj if isinstance(obj, Tensor) else None


def check_input_size(name: str, input_size: object, multiple: int = 32) -> int:
    """``input_size`` (pixels of a square network input) as an int, a positive multiple of ``multiple`` (the
    network's largest stride); ``ValueError`` naming the detector otherwise."""
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < multiple or input_size % multiple:
        raise ValueError(f"{name}: input_size must be a positive multiple of {multiple} pixels, got {input_size!r}")
    return input_size

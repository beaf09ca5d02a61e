"""Intel Open Model Zoo ``person-reidentification-retail-0287``: whole-body appearance embedding (256-d) for body
re-identification, batched in torch (onnx2torch) and differentiable.

Source: the OMZ model card (Apache-2.0, Copyright Intel Corporation): "a person reidentification model for a general
scenario. It uses a whole body image as an input and outputs an embedding vector to match a pair of images by the
cosine distance"; OmniScaleNet backbone with Linear Context Transform blocks, 0.595 M parameters, Market-1501
rank-1 92.9 % / mAP 76.6 %. Training data: not stated by the card (MSMT17 likely; research use only). Weights:
``person-reidentification-retail-0287_ir2onnx.onnx`` in ``$ANONLAB_SHARED/models`` (:data:`anonlab.weights.PERSON_REID_0287`;
not packaged), an op-by-op ONNX rewrite of Intel's FP32 IR with every weight unchanged (shared/models/MANIFEST.md:
max abs difference to the IR 6.8e-6 on 185 PETS crops). Its batch dimension is free (no baked batch-1 reshapes,
unlike nanodet/yolox: :func:`~anonlab.detectors._common.unbake_reshapes` is not needed; the conformance test checks
a batch equals its rows one by one).

I/O (MANIFEST): input ``data`` float ``(N, 3, 256, 128)`` **BGR 0..255**, not normalised (the graph swaps to RGB,
subtracts the ImageNet mean, divides by its std and applies an instance norm itself); output ``(N, 256)``
unnormalised (L2 norm about 5-9): compare by cosine. No published operating threshold (``threshold`` None).

Crop (``alignment = "box"``): the person box resized to 128 wide x 256 high with no letterbox, as OMZ's accuracy
check does (Pillow bilinear on the box). Here it is one batched :func:`torchvision.ops.roi_align` call
(``aligned=True``: pixel ``i`` covers ``[i, i + 1)``; adaptive sampling ratio): for an upscaled box (every PETS09
pedestrian) that is bilinear interpolation at the output pixel centres, as Pillow's; a downscaled box averages
``ceil(scale)`` bilinear samples per output pixel where Pillow uses its wider triangle filter. The crops' outermost
half pixel mixes in the image just outside the box, where Pillow's crop-then-resize clamps to the box edge
(tests/test_person_reid.py compares the two). A body has no landmarks: ``crop`` returns aligned = False for every
box, meaning "made from the box", which is this recognizer's own method here, not the face recognizers' counted
fallback; the identity evaluation reads it together with ``alignment``.

Minimum size ``min_face_px = 8`` (the shorter side, i.e. the width of an upright pedestrian): chosen here, the card
gives none. Below 8 px the 128-px-wide input is upsampled more than 16x from fewer than 8 columns of body; the
narrowest PETS09 S2L1 ground-truth box in the 480x360 video is 9.8 px wide (median 18) and those are re-identified
well above chance (benchmarks/RESULTS.md), so 8 rejects nothing the data show to work.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor
from torchvision.ops import roi_align

from anonlab import weights
from anonlab._checks import check_choice
from anonlab.detectors._common import onnx_to_torch, ort_session, quiet_onnx2torch
from anonlab.recognizers.base import RECOGNIZERS, RecognizerBase
from anonlab.types import check_images

#: ``torch``: onnx2torch, differentiable; ``onnxruntime``: the same ONNX graph, several times faster on CPU
BACKENDS = ("torch", "onnxruntime")


@RECOGNIZERS.register("person_reid_0287")
class PersonReID0287(RecognizerBase):
    """OMZ person re-ID 0287: person boxes -> ``uint8 (N, 3, 256, 128)`` RGB crops -> ``float32 (N, 256)``.

    ``weights``: an explicit path to the ONNX file (sha256 checked); None finds it (``$ANONLAB_WEIGHTS``, then
    ``$ANONLAB_SHARED/models``, see :mod:`anonlab.weights`). Raises ``FileNotFoundError`` naming the places searched
    when it is absent. ``backend`` (:data:`BACKENDS`): the torch module runs on the module's device (move it with
    ``.to(device)``), differentiable through :meth:`embed_float`; onnxruntime gives the same embeddings (max abs
    difference about 1e-6) several times faster on CPU (benchmarks/RESULTS.md) but no gradient.
    """

    kind = "person"
    input_size_hw: ClassVar[tuple[int, int]] = (256, 128)
    alignment: ClassVar[str] = "box"
    embedding_dim: ClassVar[int] = 256
    distance: ClassVar[str] = "cosine"
    threshold: ClassVar[float | None] = None
    min_face_px: ClassVar[int] = 8

    def __init__(self, weights: str | None = None, backend: str = "torch") -> None:
        super().__init__()
        check_choice("backend", backend, BACKENDS, where=self.name)
        self.backend = backend
        self.weights_path: Path = _resolve(weights)
        # channels-last: the 60 depthwise 3x3 convolutions run about 1.7x faster on CPU (same result within 1e-6)
        self.net = onnx_to_torch(self.weights_path, self.name).to(memory_format=torch.channels_last)
        self._ort = None  # onnxruntime session, made on first use for the crops' device
        self._ort_device: torch.device | None = None

    def crop(self, images: Tensor, boxes: Tensor, batch_idx: Tensor) -> tuple[Tensor, Tensor]:
        """``images`` ``uint8 (B, 3, H, W)`` RGB, ``boxes`` ``float32 (N, 4)`` xyxy pixels with ``batch_idx (N,)``
        -> ``uint8 (N, 3, 256, 128)`` RGB crops (each box stretched to 128 x 256, module docstring) and an all-False
        ``(N,)`` bool (made from the box, by design). Raises ``ValueError`` for malformed inputs."""
        check_images(images, f"{self.name} images")
        n = boxes.shape[0]
        if boxes.ndim != 2 or boxes.shape[1] != 4 or batch_idx.shape != (n,):
            raise ValueError(f"{self.name}: boxes must be (N, 4) with batch_idx (N,), got {tuple(boxes.shape)} and "
                             f"{tuple(batch_idx.shape)}")
        none = torch.zeros(n, dtype=torch.bool, device=images.device)
        if n == 0:
            return torch.empty((0, 3, *self.input_size_hw), dtype=torch.uint8, device=images.device), none
        bidx = batch_idx.to(images.device)
        used = torch.unique(bidx)  # convert only the images that hold a box to float
        rois = torch.cat([torch.searchsorted(used, bidx).float()[:, None], boxes.to(images.device, torch.float32)], 1)
        out = roi_align(images[used].float(), rois, self.input_size_hw, spatial_scale=1.0, sampling_ratio=0,
                        aligned=True)
        return out.round_().clamp_(0, 255).to(torch.uint8), none

    def embed_float(self, x: Tensor) -> Tensor:
        """Differentiable (the torch module whatever ``backend`` says): float ``(N, 3, 256, 128)`` RGB in [0, 1]
        (as the face recognizers' ``embed_float``) -> ``float32 (N, 256)`` unnormalised."""
        bgr = (x * 255.0).flip(1).contiguous(memory_format=torch.channels_last)  # the graph wants BGR 0..255
        with quiet_onnx2torch():
            return self.net(bgr)

    def embed(self, crops: Tensor) -> Tensor:
        """``uint8 (N, 3, 256, 128)`` RGB crops -> ``float32 (N, 256)`` unnormalised, on the crops' device, with
        the chosen ``backend`` (``onnxruntime``: CPU or CUDA provider by the crops' device, no fallback)."""
        self.check_crops(crops)
        if len(crops) == 0:
            return torch.empty((0, self.embedding_dim), device=crops.device)
        if self.backend == "onnxruntime":
            if self._ort is None or self._ort_device != crops.device:
                self._ort = ort_session(self.weights_path, self.name, crops.device)
                self._ort_device = crops.device
            bgr = crops.flip(1).float().cpu().numpy()
            return torch.from_numpy(self._ort.run(None, {"data": bgr})[0]).float().to(crops.device)
        with torch.no_grad():
            return self.embed_float(crops.float() / 255.0).float()

    def extra_repr(self) -> str:
        return f"backend={self.backend}"


def _resolve(path: str | None) -> Path:
    return weights.resolve(weights.PERSON_REID_0287, path)

"""MobileFaceNet (Chen et al. 2018, arXiv 1804.07573; foamliu/MobileFaceNet, ArcFace loss on refined MS-Celeb-1M),
128-d, batched and differentiable in torch.

Weights: ``mobilefacenet_foamliu.onnx`` (``anonlab.weights.MOBILEFACENET``: Apache-2.0, not packaged; found in
``$ANONLAB_WEIGHTS``, ``../shared/models`` or the user cache, sha256 checked; MANIFEST.md section
"mobilefacenet_foamliu.onnx"). The ONNX export fixed the batch at 1 in its one Reshape (``[1, -1]``, the embedding
flatten); after onnx2torch, :func:`~anonlab.detectors._common.unbake_reshapes` turns it into ``flatten(1)``, so any
batch runs in one call and gradients reach the pixels.

Input (MANIFEST): 112 x 112 RGB aligned to the ArcFace 5-point template (:mod:`anonlab.recognizers.align`; landmarks
from YuNet by default), ``(x / 255 - mean) / std`` with ImageNet's mean ``(0.485, 0.456, 0.406)`` and std
``(0.229, 0.224, 0.225)``. Output: an unnormalised 128-d embedding (L2 norm about 8-9), compared by cosine.
The repo's LFW evaluation also adds the embedding of the mirrored crop; that is not done here (the MANIFEST measured
the same AUC without it).

Threshold: None. The upstream README reports LFW 99.48 % but publishes no operating threshold (its ``lfw_eval.py``
picks the best threshold per run), so none is declared. Measured clean verification on the deepface pairs:
``benchmarks/RESULTS.md`` ("Recognizers").
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from anonlab import weights as _weights
from anonlab.detectors._common import onnx_to_torch, quiet_onnx2torch, unbake_reshapes
from anonlab.recognizers.align import ArcFaceAlignedRecognizer, ArcFaceAligner
from anonlab.recognizers.base import RECOGNIZERS

#: ImageNet normalisation (torchvision's constants), as the MANIFEST states for this export
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)


@RECOGNIZERS.register("mobilefacenet")
class MobileFaceNet(ArcFaceAlignedRecognizer):
    """MobileFaceNet: ``arcface5``-aligned ``uint8 (N, 3, 112, 112)`` crops -> ``float32 (N, 128)``, batched.

    ``landmarks``: where the 5 points come from (``yunet``, ``mtcnn`` or ``dlib68``, :mod:`anonlab.recognizers.align`);
    ``weights``: path to the ONNX file (else :func:`anonlab.weights.resolve`; the sha256 is checked either way).
    Raises ``FileNotFoundError`` naming the places searched when the file is absent.
    """

    input_size_hw: ClassVar[tuple[int, int]] = (112, 112)
    alignment: ClassVar[str] = "arcface5"
    embedding_dim: ClassVar[int] = 128
    distance: ClassVar[str] = "cosine"
    threshold: ClassVar[float | None] = None
    #: :meth:`embed_float` and :meth:`crop_float` carry gradients to the pixels (white-box attacks, ``cloak``)
    capabilities: ClassVar[frozenset[str]] = frozenset({"differentiable"})

    def __init__(self, landmarks: str = "yunet", weights: str | None = None) -> None:
        super().__init__()
        self.weights_path = _weights.resolve(_weights.MOBILEFACENET, weights)
        self.net = unbake_reshapes(onnx_to_torch(self.weights_path, self.name), self.name)
        self.aligner = ArcFaceAligner(self.input_size_hw, landmarks)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD_RGB).view(1, 3, 1, 1), persistent=False)

    def embed_float(self, x: Tensor) -> Tensor:
        """Differentiable: float ``(N, 3, 112, 112)`` RGB in [0, 1] -> ``float32 (N, 128)`` (unnormalised)."""
        if len(x) == 0:
            return x.new_zeros((0, self.embedding_dim))
        with quiet_onnx2torch():
            return self.net((x - self.mean) / self.std).float()

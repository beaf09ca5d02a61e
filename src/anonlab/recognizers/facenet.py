"""FaceNet (Schroff et al. CVPR 2015) as facenet-pytorch's ``InceptionResnetV1`` with the VGGFace2 weights
(``20180402-114759-vggface2.pt``, timesler/facenet-pytorch's port of davidsandberg/facenet; facenet-pytorch reports
99.65 % on LFW), 512-d, batched and differentiable.

Weights are not packaged (111,898,327 bytes): ``anonlab weights fetch facenet`` downloads them once (needs internet;
``anonlab.weights.FACENET_VGGFACE2`` pins URL and sha256), or pass ``weights=PATH``. Nothing is downloaded at run
time: facenet-pytorch's own ``pretrained=`` path (which downloads) is never used; the network is built empty and
the state dict loaded with ``weights_only=True``, minus the 8631-class ``logits`` layer the embedding does not use.

Input: 160 x 160 RGB, ``fixed_image_standardization`` ((x - 127.5) / 128, facenet-pytorch ``models/mtcnn.py``).
facenet-pytorch crops faces by MTCNN's box without rotation; here crops are aligned to the ArcFace 5-point template
scaled to 160 px (:mod:`anonlab.recognizers.align`), as for ``mobilefacenet``, so both see the same face geometry.
Output: the L2-normalised embedding ``InceptionResnetV1.forward`` returns, compared by cosine.

Threshold: None: facenet-pytorch and davidsandberg/facenet choose the LFW threshold per cross-validation fold and
publish no fixed operating point.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from anonlab import weights as _weights
from anonlab.recognizers.align import ArcFaceAlignedRecognizer, ArcFaceAligner
from anonlab.recognizers.base import RECOGNIZERS


@RECOGNIZERS.register("facenet")
class FaceNet(ArcFaceAlignedRecognizer):
    """facenet-pytorch ``InceptionResnetV1`` (VGGFace2): ``arcface5``-aligned ``uint8 (N, 3, 160, 160)`` crops ->
    ``float32 (N, 512)`` unit vectors, batched.

    ``weights``: path to ``20180402-114759-vggface2.pt`` (else :func:`anonlab.weights.resolve`; sha256 checked);
    ``landmarks``: ``yunet``, ``mtcnn`` or ``dlib68``. Raises ``FileNotFoundError`` naming where it looked and how
    to fetch.
    """

    input_size_hw: ClassVar[tuple[int, int]] = (160, 160)
    alignment: ClassVar[str] = "arcface5"
    embedding_dim: ClassVar[int] = 512
    distance: ClassVar[str] = "cosine"
    threshold: ClassVar[float | None] = None
    capabilities: ClassVar[frozenset[str]] = frozenset({"differentiable"})

    def __init__(self, weights: str | None = None, landmarks: str = "yunet") -> None:
        super().__init__()
        self.weights_path = _weights.resolve(_weights.FACENET_VGGFACE2, weights)
        from facenet_pytorch import InceptionResnetV1

        self.net = InceptionResnetV1(pretrained=None, classify=False)
        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        self.net.load_state_dict({k: v for k, v in state.items() if not k.startswith("logits.")})
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.aligner = ArcFaceAligner(self.input_size_hw, landmarks)

    def embed_float(self, x: Tensor) -> Tensor:
        """Differentiable: float ``(N, 3, 160, 160)`` RGB in [0, 1] -> ``float32 (N, 512)`` unit vectors."""
        if len(x) == 0:
            return x.new_zeros((0, self.embedding_dim))
        return self.net((x * 255.0 - 127.5) / 128.0).float()

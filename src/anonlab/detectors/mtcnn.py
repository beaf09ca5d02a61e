"""MTCNN (Zhang et al. 2016) as packaged by facenet-pytorch 2.5 (P/R/O-Net weights ship in its wheel).

The whole batch goes through facenet-pytorch's own pipeline, ``facenet_pytorch.models.utils.detect_face.detect_face``
(the function ``MTCNN.detect`` wraps), fed a torch tensor on the images' device: no PIL or numpy round trip on the
way in. The image pyramid and P-Net run batched; R-Net/O-Net crops are cut per box and the final NMS runs in numpy
inside the library, so results come back through the host (facenet-pytorch's design, not ours). The nets are torch
modules but the pipeline (thresholds, NMS, integer crops) is not usefully differentiable: no ``"differentiable"``.

Devices: the three nets are submodules, so the adapter moves with ``.to(device)`` and runs where the images are;
images on another device than the nets raise (no silent copy).

Scores: O-Net's face probability (softmax, in [0, 1]). facenet-pytorch's stage thresholds are (0.6, 0.7, 0.7);
here P-Net and R-Net keep theirs (``stage_thresholds``) and the O-Net stage keeps every box with probability
> ``score_floor``, so the low scores AP needs are real outputs. The final NMS is greedy by score, so the boxes
above 0.7 equal facenet-pytorch's defaults. The default threshold 0.9 is stricter than facenet-pytorch's 0.7:
on zidane.jpg two background boxes score 0.78 and 0.77, the two faces 1.0 and 0.997.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from anonlab._checks import check_int, check_range
from anonlab.detectors._common import from_host
from anonlab.detectors.base import DETECTORS
from anonlab.types import Detections, Detector, check_images

#: P-Net's input window; facenet-pytorch builds no pyramid (and then crashes) for frames with no scale >= this
PNET_WINDOW = 12


@DETECTORS.register("mtcnn")
class MTCNNFace(Detector):
    """facenet-pytorch's MTCNN, batched over same-size images, on the images' device.

    ``forward(images uint8 (B, 3, H, W) RGB) -> Detections`` on ``images.device``: boxes xyxy in input pixels
    (clipped to the image), scores = O-Net face probability, labels 0 ("face").

    Params: ``min_face_size`` smallest face searched in pixels (>= 1; the pyramid starts at 12 / min_face_size);
    ``stage_thresholds`` (P-Net, R-Net) probabilities in [0, 1] a candidate needs to go on; ``factor`` pyramid
    step in (0, 1).
    """

    kind = "face"
    classes = ("face",)
    capabilities = frozenset()
    default_threshold = 0.9
    score_note = "MTCNN O-Net face probability; 0.9 (facenet-pytorch's own last-stage threshold is 0.7)"

    def __init__(
        self,
        threshold: float | None = None,
        score_floor: float | None = None,
        min_face_size: int = 20,
        stage_thresholds: Sequence[float] = (0.6, 0.7),
        factor: float = 0.709,
    ) -> None:
        super().__init__(threshold, score_floor)
        check_int("min_face_size", min_face_size, 1, where="mtcnn", note="pixels")
        stages = tuple(stage_thresholds) if isinstance(stage_thresholds, Sequence) else ()
        if len(stages) != 2 or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0 for t in stages
        ):
            raise ValueError(
                f"mtcnn: stage_thresholds must be two numbers in [0, 1] (P-Net, R-Net), got {stage_thresholds!r}"
            )
        check_range("factor", factor, 0.0, 1.0, lo_open=True, hi_open=True, where="mtcnn", note="pyramid step")
        self.min_face_size = min_face_size
        self.stage_thresholds = (float(stages[0]), float(stages[1]))
        self.factor = float(factor)

        from facenet_pytorch import MTCNN

        # keep_all: every face; thresholds/min_face_size/factor are passed to detect_face per call (see forward)
        self.net = MTCNN(keep_all=True, min_face_size=min_face_size, factor=self.factor, device=None).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def has_pyramid(self, size_hw: tuple[int, int]) -> bool:
        """Whether facenet-pytorch builds at least one pyramid level for frames of ``size_hw`` (its exact test)."""
        return min(size_hw) * (float(PNET_WINDOW) / self.min_face_size) >= PNET_WINDOW

    @torch.no_grad()
    def forward(self, images: Tensor) -> Detections:
        check_images(images)
        device = images.device
        b, _, h, w = images.shape
        if b == 0 or not self.has_pyramid((h, w)):
            return Detections.empty(device)
        net_device = self.net.pnet.conv1.weight.device
        if net_device != device:
            raise ValueError(
                f"mtcnn: images are on {device} but the model is on {net_device}; call .to({str(device)!r})"
            )
        from facenet_pytorch.models.utils.detect_face import detect_face

        thresholds = [*self.stage_thresholds, self.score_floor]
        # (B, H, W, 3) view, as the library wants; it converts to float itself (a new tensor; ours is untouched)
        batch_boxes, _landmarks = detect_face(
            images.permute(0, 2, 3, 1), self.min_face_size, self.net.pnet, self.net.rnet, self.net.onet,
            thresholds, self.factor, device,
        )  # fmt: skip
        per_image = [torch.from_numpy(np.asarray(batch_boxes[i], dtype=np.float32).reshape(-1, 5)) for i in range(b)]
        # (N_i, 5) per image: x1, y1, x2, y2, prob
        return from_host([p[:, :4] for p in per_image], [p[:, 4] for p in per_image], (h, w), device, self.score_floor)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, min_face_size={self.min_face_size}, stage_thresholds={self.stage_thresholds}, "
            f"factor={self.factor}"
        )

"""``cloak``: an adversarial perturbation of each face that pushes its recognizer embedding away from the person's
own (untargeted, in the manner of LowKey, Cherepanova et al. ICLR 2021; Fawkes, Shan et al. USENIX Security 2020,
pushes towards another identity instead), white-box on the differentiable ``mobilefacenet``.

Projected gradient descent (Madry et al. ICLR 2018) on the pixels inside each (``mask_scale``-enlarged) box, under
an L-inf budget of ``epsilon`` grey levels (/255 units: 4, 8, 16 as in the cloaking literature), for ``steps``
signed-gradient steps of ``step_size`` grey levels (default ``2.5 * epsilon / steps``, Madry et al.'s choice),
starting from the clean image (no random start, so the output is deterministic on CPU; CUDA's ``grid_sample``
backward accumulates with atomics and may differ in the last bit between runs). The objective is the summed cosine
similarity between each face's current and clean embeddings (both from the same ArcFace-aligned crop: landmarks on
the clean image, :mod:`anonlab.recognizers.align`), minimised. Pixels outside the boxes never change; the output is
rounded to uint8 and clamped to ``[clean - floor(epsilon), clean + floor(epsilon)]`` and to [0, 255], so the bound
holds exactly after rounding.

Errors: ``ValueError`` for a bad ``epsilon``/``steps``/``step_size``, ``FileNotFoundError`` when the recognizer's
weights are absent (raised when the defense is built, before any work).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from anonlab._checks import check_choice, check_int, check_range
from anonlab.defenses.base import DEFENSES, DefenseBase
from anonlab.defenses.regions import make_regions
from anonlab.types import Detections

#: recognizers the cloak can be computed against (white-box: they need ``embed_float`` and ``crop_float``)
WHITE_BOX = ("mobilefacenet",)


@DEFENSES.register("cloak")
class Cloak(DefenseBase):
    """PGD cloak of the faces in ``dets`` (module docstring).

    ``forward(images uint8 (B, 3, H, W) RGB, dets: Detections on the same device) -> uint8 (B, 3, H, W)``.
    ``epsilon``: L-inf budget in grey levels (> 0, at most 255); ``steps``: PGD iterations (>= 1); ``step_size``:
    grey levels per step (None: ``2.5 * epsilon / steps``); ``recognizer``: the white-box model (``mobilefacenet``);
    ``mask_scale`` >= 1 enlarges each box about its centre; ``weights``: the recognizer's weights path.
    """

    label_quiet = ("shape", "mask_scale", "seed", "color", "recognizer", "weights")

    def __init__(self, epsilon: float = 8.0, steps: int = 10, step_size: float | None = None,
                 recognizer: str = "mobilefacenet", mask_scale: float = 1.0, weights: str | None = None) -> None:
        super().__init__()
        self.epsilon = check_range("epsilon", epsilon, 0.0, 255.0, lo_open=True, where=self.name,
                                   note="grey levels (/255 units), e.g. 4, 8 or 16")
        self.steps = check_int("steps", steps, 1, where=self.name, whole_floats=True)
        self.step_size = None if step_size is None else check_range("step_size", step_size, 0.0, lo_open=True,
                                                                    where=self.name, note="grey levels")
        self.recognizer = check_choice("recognizer", recognizer, WHITE_BOX, where=self.name)
        self.mask_scale = check_range("mask_scale", mask_scale, 1.0, where=self.name,
                                      note="1.3 enlarges boxes by 30 %")
        self.weights = weights
        from anonlab.recognizers import RECOGNIZERS

        self.model = RECOGNIZERS.build(recognizer, weights=weights)

    @property
    def alpha(self) -> float:
        """Step size in grey levels."""
        return self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps

    def forward(self, images: Tensor, dets: Detections) -> Tensor:
        self.check_inputs(images, dets)
        b, _, h, w = images.shape
        if len(dets) == 0:
            return images.clone()
        mask = make_regions(dets, b, (h, w), "rect", self.mask_scale).mask.to(images.device)  # (B, 1, H, W)
        if not bool(mask.any()):
            return images.clone()
        # the engine runs defenses under torch.inference_mode(); PGD needs autograd, on normal (cloned) tensors
        with torch.inference_mode(False), torch.enable_grad():
            return self._pgd(images.clone(), dets.boxes.clone(), dets.batch_idx.clone(), mask.clone())

    def _pgd(self, images: Tensor, boxes: Tensor, batch_idx: Tensor, mask: Tensor) -> Tensor:
        clean = images.float()
        with torch.no_grad():
            m, _ = self.model.aligner.transforms(images, boxes, batch_idx)
            ref = F.normalize(self.model.embed_float(self.model.crop_float(clean / 255, batch_idx, m)), dim=1)
        lo, hi = (clean - self.epsilon).clamp(0, 255), (clean + self.epsilon).clamp(0, 255)
        x = clean.clone()
        for _ in range(self.steps):
            x.requires_grad_(True)
            emb = self.model.embed_float(self.model.crop_float(x / 255, batch_idx, m))
            loss = (F.normalize(emb, dim=1) * ref).sum()
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x = x - self.alpha * grad.sign() * mask
                x = torch.minimum(torch.maximum(x, lo), hi)
        budget = math.floor(self.epsilon)
        out = x.detach().round()
        out = torch.minimum(torch.maximum(out, clean - budget), clean + budget).clamp(0, 255)
        return torch.where(mask, out, clean).to(torch.uint8)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, steps={self.steps}, alpha={self.alpha:g}, recognizer={self.recognizer}"

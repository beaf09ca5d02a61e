"""Scene normalisation for face-size studies: rescale a frame so its faces have a chosen pixel height.

``rescale_to_face(sample, face_px)`` resizes the image (antialiased when shrinking) and every ground-truth box
by one factor, chosen so the **median height of the annotated (non-ignored) faces** becomes ``face_px``. The
box coordinates are scaled exactly; the image size is rounded to whole pixels, so a face height lands within
1 px of ``face_px``. Frames without annotated faces cannot be normalised and return None.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from anonlab._checks import check_positive
from anonlab.types import GroundTruth, Sample, SampleError

#: the longest side (pixels) a rescaled frame may have: 8192, the texture limit of common GPUs and 4x the long side
#: of 4K UHD; a 3-channel uint8 frame of 8192 x 8192 is 192 MiB before any detector runs
MAX_SIDE = 8192


def median_face_height(gt: GroundTruth) -> float | None:
    """Median pixel height of the non-ignored face boxes, or None when there are none."""
    faces = gt.faces[~gt.ignore_faces]
    if len(faces) == 0:
        return None
    return float((faces[:, 3] - faces[:, 1]).median())


def resize_image(image: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """uint8 (3, H, W) -> uint8 (3, h, w): bilinear, antialiased when shrinking, rounded."""
    h, w = image.shape[-2:]
    if (h, w) == tuple(size_hw):
        return image
    shrink = size_hw[0] < h or size_hw[1] < w
    x = F.interpolate(image[None].float(), size=size_hw, mode="bilinear", align_corners=False, antialias=shrink)
    return x[0].round().clamp(0, 255).to(torch.uint8)


def rescale_to_face(sample: Sample, face_px: float, max_side: int = MAX_SIDE) -> Sample | None:
    """``sample`` rescaled so its median annotated face is ``face_px`` high; None if it has no annotated face.

    Raises ``ValueError`` for ``face_px <= 0`` (a configuration error) and :class:`~anonlab.types.SampleError`
    (a problem of this frame alone: the engine lists it as failed and scores the others) when the result would
    exceed ``max_side`` pixels on a side (a tiny face blown up).
    """
    check_positive("face_px", face_px, note="pixels")
    current = median_face_height(sample.gt)
    if current is None or current <= 0:
        return None
    s = face_px / current
    h, w = sample.image.shape[-2:]
    size = (max(1, round(h * s)), max(1, round(w * s)))
    if max(size) > max_side:
        raise SampleError(f"{sample.image_id}: scaling faces of {current:.0f} px to {face_px} px needs a "
                         f"{size[1]}x{size[0]} frame, over max_side={max_side}")
    sy, sx = size[0] / h, size[1] / w
    scale = torch.tensor([sx, sy, sx, sy])
    g = sample.gt
    gt = GroundTruth(faces=g.faces * scale, persons=g.persons * scale, face_ids=g.face_ids, person_ids=g.person_ids,
                     ignore_faces=g.ignore_faces, ignore_persons=g.ignore_persons, pseudo_gt=g.pseudo_gt)
    return Sample(sample.image_id, resize_image(sample.image, size), gt, sample.path, sample.notes)

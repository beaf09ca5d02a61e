"""Image decoding: the one place where files become ``uint8 (3, H, W)`` RGB tensors (EXIF applied)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image file could not be decoded; the message names the file and the reason, on one line."""


def read_image(path: str | Path) -> Tensor:
    """Decode ``path`` to ``uint8 (3, H, W)`` RGB on the CPU, EXIF orientation applied.

    Raises :class:`ImageReadError` naming the file when it is missing, empty, truncated or not an image.
    Truncated JPEGs decode "successfully" in libjpeg (grey bottom rows and a warning), so a JPEG whose data
    does not end with the EOI marker is rejected here.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageReadError(f"cannot read image {p}: {e.strerror or e}") from e
    if not data:
        raise ImageReadError(f"cannot read image {p}: file is empty")
    if data[:3] == b"\xff\xd8\xff" and b"\xff\xd9" not in data[-64:]:
        raise ImageReadError(f"cannot read image {p}: truncated JPEG (no end-of-image marker)")
    try:
        img = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB,
                           apply_exif_orientation=True)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImageReadError(f"cannot read image {p}: {msg}") from e
    if img.dtype != torch.uint8:
        raise ImageReadError(f"cannot read image {p}: expected 8-bit channels, got {img.dtype}")
    return img.contiguous()

"""Image decoding: the one place where files become ``uint8 (3, H, W)`` RGB tensors (EXIF applied)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image file could not be decoded; the message names the file and the reason, on one line."""


#: where JPEGs are decoded: None = CPU (libjpeg-turbo); a CUDA device = nvJPEG through torchvision
_DECODE_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("decode_device", default=None)


@contextlib.contextmanager
def decode_on(device: torch.device | str | None) -> Iterator[None]:
    """Within this block (and in threads started with a copy of its context), :func:`read_image` decodes JPEG
    files on ``device`` when it is a CUDA device (nvJPEG; other formats, and JPEGs with EXIF data, whose
    orientation nvJPEG ignores, decode on the CPU and are moved there). A CPU device or None decodes on the CPU."""
    dev = None if device is None else torch.device(device)
    token = _DECODE_DEVICE.set(dev if dev is not None and dev.type == "cuda" else None)
    try:
        yield
    finally:
        _DECODE_DEVICE.reset(token)


def read_image(path: str | Path) -> Tensor:
    """Decode ``path`` to ``uint8 (3, H, W)`` RGB, EXIF orientation applied: on the CPU, or for JPEGs on the CUDA
    device chosen with :func:`decode_on`.

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
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    device = _DECODE_DEVICE.get()
    try:
        # nvJPEG ignores EXIF orientation: JPEGs with an EXIF block decode on the CPU, like other formats
        if device is not None and data[:3] == b"\xff\xd8\xff" and b"Exif\x00\x00" not in data[:65536]:
            torch.cuda.current_stream(device).synchronize()  # nvJPEG's writes do not wait on the stream
            img = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
            torch.cuda.current_stream(device).synchronize()
        else:
            img = decode_image(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
            if device is not None:  # one batch never mixes devices
                img = img.to(device)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImageReadError(f"cannot read image {p}: {msg}") from e
    if img.dtype != torch.uint8:
        raise ImageReadError(f"cannot read image {p}: expected 8-bit channels, got {img.dtype}")
    return img.contiguous()


def check_device_decode(device: torch.device | str) -> None:
    """Raise ``RuntimeError`` naming the cause when JPEGs cannot be decoded on ``device`` (e.g. torchvision
    built without nvJPEG), before a job starts; a no-op for the CPU."""
    from torchvision.io import encode_jpeg

    dev = torch.device(device)
    if dev.type != "cuda":
        return
    probe = encode_jpeg(torch.zeros(3, 16, 16, dtype=torch.uint8))
    try:
        decode_jpeg(probe, device=dev)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"torchvision cannot decode JPEG on {dev} ({msg}); use loader.decode=cpu") from e

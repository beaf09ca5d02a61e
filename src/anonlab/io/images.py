"""Image decoding: the one place where still files become ``uint8 (3, H, W)`` RGB tensors, upright.

Every suffix in :data:`IMAGE_SUFFIXES` decodes. The header is read first (Pillow, no pixel data) for the format,
the size and the EXIF orientation; an image over the pixel cap (:func:`limit_pixels`) is refused before anything
is allocated. Then:

- JPEG (and MPO, the multi-picture JPEG of phones): torchvision (libjpeg-turbo on the CPU, nvJPEG on a CUDA device
  chosen with :func:`decode_on`);
- PNG, TIFF (any compression Pillow's libtiff reads), BMP, WebP, GIF: Pillow. A file of several frames or pages
  (animated GIF, WebP or PNG, multi-page TIFF) is read as its first frame only, and a reader note says how many
  were left out. PNG does not go to
  torchvision: its libpng wrapper (0.29) segfaults on a PNG whose image data is shorter than its header promises
  (found by tests/test_fuzz_reader.py; Pillow raises "image file is truncated").

Channel layouts: grey -> 3 equal channels, palette -> RGB (exact), alpha dropped (not composited: a transparent
pixel shows the colour stored under it, as the redacted output will; a file with any pixel not fully opaque gets a
reader note saying how many); 16-bit samples are
scaled to 8 bit, never clipped: 16-bit grey by ``round(v * 255 / 65535)`` (exact integer arithmetic), 16-bit
RGB(A) by Pillow's ``v >> 8`` (both map the full range onto the full range, so a mid-grey file stays mid-grey).
The EXIF orientation (JPEG APP1, PNG eXIf, TIFF and WebP EXIF) is applied, so frames and the boxes drawn on them
are in the upright frame; :func:`load_image` returns which orientation was applied.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg

from anonlab.types import SampleError

if TYPE_CHECKING:
    import PIL.Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".pgm", ".ppm")

#: the default pixel cap: Pillow's ``Image.MAX_IMAGE_PIXELS`` (1 GiB / 4 bytes / 3 channels = 89,478,485 pixels,
#: about a 9460 x 9460 frame); ``loader.max_pixels`` in conf/bench.yaml changes it
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3

#: EXIF orientation (TIFF tag 274, values 1-8) -> what was done to the stored pixels to show them upright
ORIENTATIONS = {1: "none", 2: "mirrored left-right", 3: "rotated 180°", 4: "mirrored top-bottom",
                5: "transposed (mirrored, rotated 90° counter-clockwise)", 6: "rotated 90° clockwise",
                7: "transversed (mirrored, rotated 90° clockwise)", 8: "rotated 90° counter-clockwise"}

#: Pillow formats and the decoder they go to
_TORCHVISION = {"JPEG": "jpeg", "MPO": "jpeg"}
_PILLOW = ("PNG", "TIFF", "BMP", "DIB", "WEBP", "GIF", "PPM")  # PPM: Netpbm PGM/PPM (the AT&T faces)


class ImageReadError(SampleError):
    """An image file could not be decoded; the message names the file and the reason, on one line. A per-sample
    problem (:class:`~anonlab.types.SampleError`): the engine lists the image as failed and goes on."""


#: where JPEGs are decoded: None = CPU (libjpeg-turbo); a CUDA device = nvJPEG through torchvision
_DECODE_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("decode_device", default=None)
_MAX_PIXELS: contextvars.ContextVar[int] = contextvars.ContextVar("max_pixels", default=DEFAULT_MAX_PIXELS)


@contextlib.contextmanager
def decode_on(device: torch.device | str | None) -> Iterator[None]:
    """Within this block (and in threads started with a copy of its context), :func:`read_image` decodes JPEG
    files on ``device`` when it is a CUDA device (nvJPEG; the EXIF orientation is applied there too; other
    formats decode on the CPU and are moved there). A CPU device or None decodes on the CPU."""
    dev = None if device is None else torch.device(device)
    token = _DECODE_DEVICE.set(dev if dev is not None and dev.type == "cuda" else None)
    try:
        yield
    finally:
        _DECODE_DEVICE.reset(token)


@contextlib.contextmanager
def limit_pixels(max_pixels: int) -> Iterator[None]:
    """Within this block (and in threads started with a copy of its context), images and video frames whose
    header declares more than ``max_pixels`` pixels (width x height) are refused with :class:`ImageReadError`
    before their pixels are allocated. Raises ``ValueError`` for a cap that is not an integer >= 1. (Above
    Pillow's own decompression-bomb check is switched off while anonlab opens a file (:func:`_pillow_open`), so this
    cap, not Pillow's fixed 179 MP, decides, with one message naming ``loader.max_pixels``.)"""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be an integer >= 1, got {max_pixels!r}")
    token = _MAX_PIXELS.set(max_pixels)
    try:
        yield
    finally:
        _MAX_PIXELS.reset(token)


@contextlib.contextmanager
def _pillow_open(data: bytes) -> Iterator[PIL.Image.Image]:
    """``PIL.Image.open`` on ``data`` with Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, a module
    global: warn above 89 MP, refuse above 179 MP) lifted, because :func:`check_pixels` applies anonlab's own cap to
    the header first. Found by the breaker: above 179 MP Pillow refused the file before ``loader.max_pixels`` was
    consulted, so a raised cap could not admit the image. Lifted for the whole process once (setting and restoring
    a module global per call would race between decode threads)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    with Image.open(io.BytesIO(data)) as im:
        yield im


def check_pixels(what: str, width: int, height: int) -> None:
    """Raise :class:`ImageReadError` (``what`` names the file) when ``width x height`` exceeds the current cap."""
    cap = _MAX_PIXELS.get()
    if width * height > cap:
        raise ImageReadError(f"{what}: its header declares {width}x{height} = {width * height:,} pixels, over "
                             f"loader.max_pixels={cap:,}")


@dataclass(frozen=True)
class DecodedImage:
    """An image as :func:`load_image` returns it: ``image`` ``uint8 (3, H, W)`` RGB, upright; ``orientation`` the
    EXIF orientation applied (1-8, 1 = none); ``note`` a one-line description of what the reader did to the
    stored pixels (rotation, bit-depth scaling), or None when it decoded them as stored."""

    image: Tensor
    orientation: int = 1
    note: str | None = None

    def notes(self, path: str | Path) -> dict[str, str]:
        """``{str(path): note}`` for :attr:`anonlab.types.Sample.notes`, or ``{}`` when decoded as stored."""
        return {str(path): self.note} if self.note else {}


def read_image(path: str | Path) -> Tensor:
    """Decode ``path`` to ``uint8 (3, H, W)`` RGB, upright (see :func:`load_image`)."""
    return load_image(path).image


def load_image(path: str | Path) -> DecodedImage:
    """Decode ``path`` (any of :data:`IMAGE_SUFFIXES`, recognised by content, not by name) to ``uint8 (3, H, W)``
    RGB with the EXIF orientation applied: on the CPU, or for JPEGs on the CUDA device chosen with
    :func:`decode_on`.

    Raises :class:`ImageReadError`, one line naming the file, when it is missing, empty, not an image, of a format
    outside the list, over the pixel cap (:func:`limit_pixels`), truncated or corrupt. A JPEG is truncated when no
    end-of-image marker follows its first scan (libjpeg would fill the missing rows with grey and only warn); data
    after the end marker (motion photos, camera trailers) is allowed.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageReadError(f"cannot read image {p}: {e.strerror or e}") from e
    if not data:
        raise ImageReadError(f"cannot read image {p}: file is empty")
    fmt, orientation = _probe(p, data)  # refuses a size over the cap
    notes = []
    if fmt in _TORCHVISION:
        img, bits = _decode_torchvision(p, data, _TORCHVISION[fmt])
    else:
        img, bits, orientation, pillow_notes = _decode_pillow(p, data)
        notes += pillow_notes
        if bits == 8 and fmt == "PNG" and len(data) > 24 and data[24] == 16:  # IHDR bit depth: Pillow kept >> 8
            notes.append("16-bit samples reduced to 8 bit (>> 8)")
    if bits == 16:
        img = scale_16_to_8(img)
        notes.append("16-bit samples scaled to 8 bit")
    if orientation != 1:
        if fmt != "TIFF":  # Pillow's TIFF loader has applied it already (libtiff)
            img = orient(img, orientation)
        notes.append(f"EXIF orientation {orientation}: {ORIENTATIONS[orientation]}")
    return DecodedImage(img.contiguous(), orientation, "; ".join(notes) or None)


#: the exception types Pillow's format plugins raise for malformed input (OSError for most; the others from header
#: parsing, e.g. TypeError "Missing dimensions" for a TIFF without size tags); tests/test_fuzz_reader.py checks that
#: nothing else escapes
_PIL_ERRORS = (OSError, ValueError, TypeError, SyntaxError, IndexError, KeyError, EOFError, struct.error,
               ZeroDivisionError, OverflowError, MemoryError, RuntimeError)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _exif_orientation(im) -> int:
    try:
        orientation = im.getexif().get(0x0112, 1)
    except _PIL_ERRORS:  # a corrupt EXIF block: the pixels may still be fine; they are shown as stored
        return 1
    # an out-of-range tag means nothing: the stored pixels are shown as they are
    return orientation if isinstance(orientation, int) and orientation in ORIENTATIONS else 1


def _probe(p: Path, data: bytes) -> tuple[str, int]:
    """(Pillow format name, EXIF orientation 1-8 for a JPEG, else 1) from the header only, no pixel data read;
    raises :class:`ImageReadError` when the header's width x height exceeds the cap (:func:`limit_pixels`)."""
    from PIL import Image

    try:
        with _pillow_open(data) as im:
            fmt, (w, h) = im.format, im.size
            check_pixels(f"cannot read image {p}", w, h)
            # (read after the size check: for some formats Pillow's getexif() decodes the whole image)
            orientation = _exif_orientation(im) if fmt in _TORCHVISION else 1
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"cannot read image {p}: {_one_line(e)}") from e
    except Image.UnidentifiedImageError as e:  # (its message names the BytesIO object, not the file)
        raise ImageReadError(f"cannot read image {p}: not an image of a supported format ("
                             f"{', '.join(IMAGE_SUFFIXES)})") from e
    except _PIL_ERRORS as e:
        raise ImageReadError(f"cannot read image {p}: not a readable image ({_one_line(e)}); supported: "
                             f"{', '.join(IMAGE_SUFFIXES)}") from e
    if fmt not in _TORCHVISION and fmt not in _PILLOW:
        raise ImageReadError(f"cannot read image {p}: format {fmt} is not supported; supported: "
                             f"{', '.join(IMAGE_SUFFIXES)}")
    return fmt, orientation


def _jpeg_truncated(data: bytes) -> bool:
    """True when no end-of-image marker (FFD9) follows the JPEG's first start-of-scan segment.

    Walks the marker segments from SOI by their lengths (so an EXIF thumbnail's own FFD9 is skipped), then
    searches the rest: inside entropy-coded data FF is always followed by 00 or a restart marker, so the first
    FFD9 after the scan header is the image's end, wherever trailing data (a motion photo's video) follows."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False  # not a marker: corrupt, not truncated; the decoder says what is wrong
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker == 0xD9:
            return False  # an end marker before any scan: the decoder reports it
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:
            return data.find(b"\xff\xd9", i + 2 + length) < 0
        i += 2 + length
    return True  # the headers end before the first scan


def _decode_torchvision(p: Path, data: bytes, kind: str) -> tuple[Tensor, int]:
    """JPEG through torchvision: ``(image (3, H, W) uint8, bits per sample)``, as stored."""
    if kind == "jpeg" and _jpeg_truncated(data):
        raise ImageReadError(f"cannot read image {p}: truncated JPEG (no end-of-image marker after its scan)")
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    device = _DECODE_DEVICE.get()
    try:
        if device is not None:
            torch.cuda.current_stream(device).synchronize()  # nvJPEG's writes do not wait on the stream
            img = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
            torch.cuda.current_stream(device).synchronize()
        else:
            img = decode_jpeg(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=False)
    except RuntimeError as e:
        raise ImageReadError(f"cannot read image {p}: {_one_line(e)}") from e
    if device is not None and img.device != device:  # one batch never mixes devices
        img = img.to(device)
    if img.dtype == torch.uint16:
        return img, 16
    if img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] != 3:
        raise ImageReadError(f"cannot read image {p}: decoded to {img.dtype} {tuple(img.shape)}, expected "
                             f"8- or 16-bit RGB")
    return img, 8


def _decode_pillow(p: Path, data: bytes) -> tuple[Tensor, int, int, list[str]]:
    """PNG / TIFF / BMP / WebP / GIF / PGM / PPM through Pillow: ``(image (3, H, W) uint8 or uint16, bits, EXIF
    orientation, notes)``, as stored, except a TIFF, whose orientation libtiff applies (Pillow's TIFF loader does so).
    Pillow reads 16-bit RGB(A) PNG/TIFF samples as their high byte (``>> 8``); 16-bit grey comes back as uint16.
    Only the first frame (page) is read; ``notes`` say what was left out: transparency (:func:`_alpha_note`) and
    the frames after the first (:func:`_frames_note`)."""
    import numpy as np
    from PIL import Image

    try:
        with _pillow_open(data) as im:
            im.seek(0)
            orientation = _exif_orientation(im)  # before load(): libtiff drops the tag once it has applied it
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N") or (mode == "I" and im.format == "PNG"):  # 16-bit grey
                arr = np.asarray(im)
                if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
                    raise ImageReadError(f"cannot read image {p}: 16-bit samples out of range")
                out = torch.from_numpy(arr.astype(np.uint16))[None].expand(3, -1, -1)
                return out.contiguous(), 16, orientation, _frames_note(im)
            if mode in ("I", "F") or mode.startswith(("I;", "F;")):
                raise ImageReadError(f"cannot read image {p}: {mode!r} samples (32-bit integer or float) have no "
                                     f"defined 8-bit range; save it as 8- or 16-bit")
            rgb = im.convert("RGB")  # grey, palette, CMYK, YCbCr -> RGB; alpha dropped
            arr = np.asarray(rgb)
            notes = _alpha_note(im) + _frames_note(im)  # counting frames seeks: after this frame's pixels are out
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"cannot read image {p}: {_one_line(e)}") from e
    except _PIL_ERRORS as e:
        raise ImageReadError(f"cannot read image {p}: {_one_line(e)}") from e
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageReadError(f"cannot read image {p}: decoded to {arr.dtype} {arr.shape}, expected 8-bit RGB")
    # one copy: to (3, H, W), writable (ascontiguousarray copied nothing, so kept Pillow's read-only buffer and
    # torch warned, where the transpose was already contiguous: a 1 x 1 image)
    img = torch.from_numpy(arr.transpose(2, 0, 1).copy())
    device = _DECODE_DEVICE.get()
    return (img.to(device) if device is not None else img), 8, orientation, notes


def _alpha_note(im: PIL.Image.Image) -> list[str]:
    """``["alpha channel dropped: ..."]`` when the loaded frame has transparency (an alpha channel, or a palette or
    tRNS transparent colour) and some pixel is not fully opaque; [] otherwise (dropping an all-opaque alpha changes
    nothing anyone sees)."""
    import numpy as np

    if not im.has_transparency_data:
        return []
    alpha = np.asarray(im.convert("RGBA").getchannel("A"))
    seen = alpha < 255
    if not seen.any():
        return []
    return [f"alpha (transparency) dropped: {seen.mean():.1%} of pixels are transparent or partly so; the colour "
            f"stored under them is used as is (not composited over a background)"]


def _frames_note(im: PIL.Image.Image) -> list[str]:
    """``["first of N frames read ..."]`` for a file of several frames or pages (animated GIF/WebP/PNG,
    multi-page TIFF); [] for a single one. Counting reads the file to its end (Pillow's ``n_frames``); a file
    damaged after its first frame still gives that frame, and the note says the rest could not be counted."""
    try:
        frames = int(getattr(im, "n_frames", 1))
    except _PIL_ERRORS as e:
        return [f"first frame read; the frames after it could not be counted ({_one_line(e)})"]
    if frames <= 1:
        return []
    kind = "pages" if im.format == "TIFF" else "frames"
    return [f"first of {frames} {kind} read ({im.format}); the other {frames - 1} are left out"]


def scale_16_to_8(img: Tensor) -> Tensor:
    """``uint16`` samples -> ``uint8`` by ``round(v * 255 / 65535)`` (exact integer arithmetic): 0 -> 0, 65535 ->
    255, and a mid-grey stays mid-grey (scaling, not clipping)."""
    v = img.to(torch.int32)
    return ((v * 255 + 32767) // 65535).to(torch.uint8)


def orient(img: Tensor, orientation: int) -> Tensor:
    """Apply EXIF ``orientation`` (1-8, TIFF tag 274) to ``(..., H, W)`` stored pixels: the upright picture, as
    Pillow's ``ImageOps.exif_transpose`` makes it (tests/test_reader.py checks all eight against it).
    Raises ``ValueError`` for another value."""
    if orientation == 1:
        return img
    if orientation == 2:
        return img.flip(-1)
    if orientation == 3:
        return img.flip(-2, -1)
    if orientation == 4:
        return img.flip(-2)
    if orientation == 5:
        return img.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(img, -1, (-2, -1))
    if orientation == 7:
        return img.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(img, 1, (-2, -1))
    raise ValueError(f"EXIF orientation must be 1-8, got {orientation!r}")


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
        raise RuntimeError(f"torchvision cannot decode JPEG on {dev} ({_one_line(e)}); use loader.decode=cpu") from e


def write_image(path: str | Path, image: Tensor, format: str, quality: int = 95) -> None:
    """Encode ``image`` (``uint8 (3, H, W)`` RGB, any device) to ``path`` with Pillow, with no metadata at all: no
    EXIF (so no GPS, no orientation tag: the pixels are stored upright), no XMP/IPTC, no ICC profile, no PNG text
    chunks (Pillow writes none of these unless given them). ``format``: ``"JPEG"`` (``quality`` 1-95, 4:2:0) or
    ``"PNG"``. Raises ``ValueError`` for another format or a bad image, ``OSError`` when the file cannot be written
    in full (a full disk)."""
    from PIL import Image

    from anonlab.types import check_images

    check_images(image[None], "write_image input")
    if format not in ("JPEG", "PNG"):
        raise ValueError(f"write_image format must be JPEG or PNG, got {format!r}")
    arr = image.permute(1, 2, 0).contiguous().cpu().numpy()
    im = Image.fromarray(arr, mode="RGB")
    # encoded in memory, then written by Python, which raises on a short write: Pillow's encoder writing to the
    # file descriptor itself ignored one on a full disk and left a truncated file that raised nothing
    buf = io.BytesIO()
    if format == "JPEG":
        im.save(buf, format="JPEG", quality=quality)
    else:
        im.save(buf, format="PNG")
    with open(path, "wb") as f:
        f.write(buf.getbuffer())

"""Fuzzing the one reader (images, video) and the annotation parsers with hypothesis.

Property: every input either decodes (a ``uint8 (3, H, W)`` image; video frames of the size the reader reports) or
raises an anonlab one-line error (``ImageReadError``, a dataset ``ValueError``) — never another exception, never a
native crash. Decoding runs in a child process (tests/_reader_worker.py), so a segfault in a decoder fails the
case instead of killing pytest; the worker is restarted after a crash.

Seeds are small valid files made here (Pillow, PyAV): JPEG, PNG (8/16-bit, grey, palette, alpha), TIFF (raw, LZW,
16-bit), BMP, WebP, GIF, a 6-frame MP4; mutations are truncations, bit flips, a valid header over a random body,
and headers that declare huge sizes. Runs are derandomized (the same cases in CI every time): 500 mutated stills,
100 huge headers, 120 mutated MP4s, 150 COCO files, 150 x 2 WIDER/MOT files = 1,170 cases, ~30 s on 2 cores.
A longer exploratory run of the same mutations (86,720 cases, 7 minutes) found nothing beyond what is fixed
(torchvision's PNG decoder crashing on short image data; Python errors in the WIDER and MOT parsers).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


class Worker:
    """One long-lived child process that decodes; restarted when it dies."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "_reader_worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

    def ask(self, kind: str, files: dict[str, bytes]) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"kind": kind, "files": {k: v.hex() for k, v in files.items()}}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.proc.wait()
            self.proc = None
            return {"outcome": "crash", "detail": f"worker exited with {code}"}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


def check(worker: Worker, kind: str, files: dict[str, bytes]) -> dict:
    out = worker.ask(kind, files)
    assert out["outcome"] in ("ok", "error"), f"{kind} {list(files)}: {out['outcome']}: {out['detail']}"
    return out


# ------------------------------------------------------------------------------------------------- seeds


def _picture(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 4 % 256], -1).astype(np.uint8)


def _pil(img, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


@lru_cache(maxsize=None)
def image_seeds() -> dict[str, bytes]:
    from PIL import Image

    rgb = Image.fromarray(_picture())
    grey16 = Image.fromarray(_picture()[..., 0].astype(np.uint16) * 257)  # mode I;16
    ex = Image.Exif()
    ex[0x0112] = 6
    out = {
        "rgb.jpg": _pil(rgb, "JPEG"), "exif6.jpg": _pil(rgb, "JPEG", exif=ex),
        "progressive.jpg": _pil(rgb, "JPEG", progressive=True), "cmyk.jpg": _pil(rgb.convert("CMYK"), "JPEG"),
        "grey.jpg": _pil(rgb.convert("L"), "JPEG"),
        "rgb.png": _pil(rgb, "PNG"), "rgba.png": _pil(rgb.convert("RGBA"), "PNG"), "la.png": _pil(rgb.convert("LA"), "PNG"),
        "p.png": _pil(rgb.convert("P"), "PNG"), "bit.png": _pil(rgb.convert("1"), "PNG"),
        "grey16.png": _pil(grey16, "PNG"), "exif6.png": _pil(rgb, "PNG", exif=ex),
        "raw.tif": _pil(rgb, "TIFF"), "lzw.tif": _pil(rgb, "TIFF", compression="tiff_lzw"),
        "grey16.tif": _pil(grey16, "TIFF"), "cmyk.tif": _pil(rgb.convert("CMYK"), "TIFF"),
        "deflate.tif": _pil(rgb.convert("RGBA"), "TIFF", compression="tiff_adobe_deflate"),
        "rgb.bmp": _pil(rgb, "BMP"), "p.bmp": _pil(rgb.convert("P"), "BMP"), "rle.bmp": _bmp_rle8(),
        "lossy.webp": _pil(rgb, "WEBP"), "lossless.webp": _pil(rgb.convert("RGBA"), "WEBP", lossless=True),
        "exif6.webp": _pil(rgb, "WEBP", exif=ex),
        "one.gif": _pil(rgb.convert("P"), "GIF"),
        "anim.gif": _pil(rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.rotate(90).convert("P")]),
    }
    return out


def _bmp_rle8() -> bytes:
    """An 8-bit RLE-compressed BMP (BI_RLE8), written by hand: Pillow reads RLE BMPs but does not write them."""
    w, h = 32, 24
    rows = b"".join(bytes([w, (7 * y) % 256]) + b"\x00\x00" for y in range(h)) + b"\x00\x01"
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    off = 14 + 40 + len(palette)
    head = struct.pack("<2sIHHI", b"BM", off + len(rows), 0, 0, off)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    return head + info + palette + rows


@lru_cache(maxsize=None)
def video_seed() -> bytes:
    import tempfile

    import av

    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "seed.mp4")
    with av.open(path, "w", options={"movflags": "faststart"}) as c:  # moov first: a truncated copy stays readable
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for k in range(6):
            frame = av.VideoFrame.from_ndarray(np.roll(_picture(48, 64), 3 * k, axis=1), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    data = Path(path).read_bytes()
    os.remove(path)
    os.rmdir(tmp)
    return data


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def huge_header(fmt: str, w: int, h: int) -> bytes:
    """A well-formed header declaring ``w x h`` pixels over a tiny body."""
    if fmt == "png":
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
                + _png_chunk(b"IEND", b""))
    if fmt == "jpg":
        data = bytearray(image_seeds()["rgb.jpg"])
        i = 2
        while data[i + 1] not in (0xC0, 0xC1, 0xC2):
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
        data[i + 5:i + 9] = struct.pack(">HH", min(h, 65535), min(w, 65535))
        return bytes(data)
    if fmt == "bmp":
        head = struct.pack("<2sIHHI", b"BM", 54 + 64, 0, 0, 54)
        info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 64, 2835, 2835, 0, 0)
        return head + info + b"\0" * 64
    if fmt == "gif":
        return (b"GIF89a" + struct.pack("<HHBBB", min(w, 65535), min(h, 65535), 0, 0, 0)
                + b"," + struct.pack("<HHHHB", 0, 0, min(w, 65535), min(h, 65535), 0) + b"\x02\x02\x44\x01\x00;")
    if fmt == "tif":
        entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8 + 2 + 12 * 9 + 4),
                   (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, 64)]
        ifd = struct.pack("<H", len(entries)) + b"".join(
            struct.pack("<HHI", t, typ, n) + (struct.pack("<HH", v, 0) if typ == 3 else struct.pack("<I", v))
            for t, typ, n, v in entries) + struct.pack("<I", 0)
        return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0" * 64
    if fmt == "webp":
        vp8x = struct.pack("<B3x", 0) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + vp8x
        return b"RIFF" + struct.pack("<I", len(body)) + body
    raise AssertionError(fmt)


# ------------------------------------------------------------------------------------------------- properties

IMAGE_NAMES = sorted(image_seeds())


def mutate(data, seed: bytes, flips: int, keep: int, body: int) -> bytes:
    """``seed`` truncated, with up to ``flips`` bit flips, or its first 8..``keep`` bytes (the header) over a random
    body of up to ``body`` bytes: the three kinds of damage real files get."""
    how = data.draw(st.sampled_from(["truncate", "flip", "body"]))
    if how == "truncate":
        return seed[: data.draw(st.integers(0, len(seed) - 1))]
    if how == "flip":
        b = bytearray(seed)
        for pos in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=flips)):
            b[pos] ^= 1 << data.draw(st.integers(0, 7))
        return bytes(b)
    head = data.draw(st.integers(8, min(keep, len(seed))))
    return seed[:head] + data.draw(st.binary(min_size=0, max_size=body))


@settings(max_examples=500, **SETTINGS)
@given(name=st.sampled_from(IMAGE_NAMES), data=st.data())
def test_mutated_images_decode_or_fail_in_one_line(worker, name, data):
    check(worker, "image", {name: mutate(data, image_seeds()[name], flips=8, keep=200, body=600)})


@settings(max_examples=100, **SETTINGS)
@given(fmt=st.sampled_from(["png", "jpg", "bmp", "gif", "tif", "webp"]),
       w=st.integers(1, 1 << 16), h=st.integers(1, 1 << 16))
def test_huge_declared_sizes_are_refused_before_decoding(worker, fmt, w, h):
    if fmt == "webp":
        w, h = min(w, 1 << 24), min(h, 1 << 24)
    out = check(worker, "image", {f"huge.{fmt}": huge_header(fmt, w, h)})
    dims = (min(w, 65535), min(h, 65535)) if fmt in ("jpg", "gif") else (w, h)
    if dims[0] * dims[1] > 4096 * 4096:  # the worker's cap
        assert out["outcome"] == "error", out


@settings(max_examples=120, **SETTINGS)
@given(data=st.data())
def test_mutated_video_decodes_its_readable_part_or_fails_in_one_line(worker, data):
    seed = video_seed()
    check(worker, "video", {"clip.mp4": mutate(data, seed, flips=6, keep=len(seed) // 2, body=2000)})


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats() | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                        max_leaves=12)


def _coco_like(draw) -> object:
    image = st.fixed_dictionaries({"id": st.one_of(st.integers(-2, 3), _JSONISH), "file_name": st.one_of(st.text(max_size=6), _JSONISH)},
                                  optional={"width": _JSONISH | st.integers(0, 9999), "height": _JSONISH | st.integers(0, 9999)})
    ann = st.fixed_dictionaries({"image_id": st.one_of(st.integers(-1, 3), _JSONISH), "category_id": st.one_of(st.integers(0, 3), _JSONISH),
                                 "bbox": st.one_of(st.lists(st.one_of(st.floats(), st.integers(-(1 << 70), 1 << 70)), max_size=5), _JSONISH)},
                                optional={"iscrowd": _JSONISH, "ignore": _JSONISH, "identity": _JSONISH | st.integers(-(1 << 70), 1 << 70)})
    cat = st.fixed_dictionaries({"id": st.one_of(st.integers(0, 3), _JSONISH), "name": st.sampled_from(["face", "person", "Face", "car"]) | _JSONISH})
    return draw(st.one_of(
        st.fixed_dictionaries({"images": st.lists(image, max_size=3), "annotations": st.lists(ann, max_size=4),
                               "categories": st.lists(cat, max_size=3)}),
        _JSONISH))


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_malformed_coco_is_one_line_error(worker, data):
    doc = _coco_like(data.draw)
    text = json.dumps(doc, allow_nan=True)
    if data.draw(st.booleans()):
        text = text[: data.draw(st.integers(0, len(text)))]
    check(worker, "coco", {"coco.json": text.encode()})


_FIELD = st.one_of(st.integers(-5, 999).map(str), st.sampled_from(["nan", "inf", "-inf", "1e400", "x", "", "²", "1.5",
                                                                   "99999999999999999999999"]))


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_malformed_wider_and_mot_files_are_one_line_errors(worker, data):
    lines = []
    for _ in range(data.draw(st.integers(0, 3))):
        lines.append(data.draw(st.sampled_from(["0--Parade/a.jpg", "", "x y"])))
        lines.append(data.draw(_FIELD))
        for _ in range(data.draw(st.integers(0, 3))):
            lines.append(" ".join(data.draw(st.lists(_FIELD, min_size=0, max_size=11))))
    check(worker, "wider", {"gt.txt": "\n".join(lines).encode()})
    rows = [",".join(data.draw(st.lists(_FIELD, min_size=1, max_size=10))) for _ in range(data.draw(st.integers(0, 4)))]
    ini = data.draw(st.sampled_from(["[Sequence]\nimWidth=64\nimHeight=48\nseqLength={}\n", "[Sequence]\nimWidth={}\n",
                                     "no section {}", "[Sequence]\nimWidth={}\nimHeight=4\n"]))
    check(worker, "mot", {"gt.txt": "\n".join(rows).encode(), "seqinfo.ini": ini.format(data.draw(_FIELD)).encode()})

"""The one reader (io/images.py, io/video.py) on real files: the shared cases (png16, tiff, rotated_phone_video),
EXIF orientation against Pillow's reference, JPEG trailers and truncation, the pixel cap, damaged and multi-stream
videos. The fuzz property tests are in tests/test_fuzz_reader.py."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import shared_path
from images import BUS, package_file

from anonlab.io.images import ImageReadError, limit_pixels, load_image, read_image
from anonlab.io.video import VideoReader

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def anonlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anonlab.cli.main", *args], capture_output=True, text=True, env=ENV,
                          timeout=600)


# ------------------------------------------------------------------------------------------------ stills


def test_png16_case_scales_to_the_control():
    root = shared_path("cases/png16")
    control = read_image(root / "rgb8_control.png")
    rgb16 = load_image(root / "rgb16.png")
    assert torch.equal(rgb16.image, control) and "16-bit" in rgb16.note
    grey = load_image(root / "gray16.png")
    assert grey.image.shape == control.shape and "16-bit" in grey.note
    assert torch.equal(grey.image[0], grey.image[1]) and torch.equal(grey.image[0], grey.image[2])
    luma = (0.299 * control[0].double() + 0.587 * control[1].double() + 0.114 * control[2].double())
    # scaled, not clipped: the grey file is the control's luminance, not white
    assert (grey.image[0].double() - luma).abs().mean() < 2.0


def test_tiff_case_decodes_like_its_control():
    root = shared_path("cases/tiff")
    control = read_image(root / "control.png")
    assert torch.equal(read_image(root / "photo.tif"), control)
    assert torch.equal(read_image(root / "photo_lzw.tiff"), control)


def _picture(h: int = 24, w: int = 40) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), ((x // 8 + y // 8) % 2) * 255], -1).astype(np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_in_every_format(tmp_path, orientation):
    from PIL import Image, ImageOps

    stored = Image.fromarray(_picture())
    ex = Image.Exif()
    ex[0x0112] = orientation
    ref_file = tmp_path / "ref.png"
    stored.save(ref_file, exif=ex)
    with Image.open(ref_file) as im:
        reference = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    for name, kw in (("a.png", {}), ("a.tif", {}), ("a.tiff", {"compression": "tiff_lzw"}),
                     ("a.webp", {"lossless": True}), ("a.jpg", {"quality": 95})):
        stored.save(tmp_path / name, exif=ex, **kw)
        got = load_image(tmp_path / name)
        assert got.orientation == orientation, name
        arr = got.image.permute(1, 2, 0).numpy()
        assert arr.shape == reference.shape, name
        tol = 12.0 if name.endswith(".jpg") else 0.0  # JPEG: lossy; the others bit-exact
        assert np.abs(arr.astype(float) - reference).mean() <= tol, name
        assert (got.note is not None) == (orientation != 1)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "PA", "RGBA", "1", "I;16"])
@pytest.mark.parametrize("fmt", ["png", "tif", "bmp", "webp", "gif"])
def test_channel_layouts_become_rgb(tmp_path, mode, fmt):
    from PIL import Image

    base = Image.fromarray(_picture())
    img = Image.fromarray(_picture()[..., 0].astype(np.uint16) * 257) if mode == "I;16" else base.convert(mode)
    try:
        img.save(tmp_path / f"x.{fmt}")
    except (OSError, ValueError, KeyError):
        pytest.skip(f"Pillow cannot write {mode} as {fmt}")
    out = read_image(tmp_path / f"x.{fmt}")
    assert out.dtype == torch.uint8 and out.shape == (3, 24, 40)


@pytest.mark.parametrize("fmt", ["png", "webp", "gif"])
def test_transparency_dropped_is_said_in_the_reader_note(tmp_path, fmt):
    """Found by the breaker: an RGBA PNG (or a GIF with a transparent colour) lost its alpha silently. The pixels
    are the colour stored under it (Pillow's RGB conversion), and the note says what share was transparent; an
    all-opaque alpha changes nothing and gets no note."""
    from PIL import Image

    rgba = np.dstack([_picture(), np.full((24, 40), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / f"opaque.{fmt}", lossless=True)
    rgba[:6, :, 3] = 0  # the top quarter transparent
    if fmt == "gif":  # a transparent palette index (255, which the 255-colour palette leaves free)
        pal = Image.fromarray(_picture()).quantize(255, dither=Image.Dither.NONE)
        idx = np.asarray(pal).copy()
        idx[:6] = 255
        img = Image.fromarray(idx, "P")
        img.putpalette(pal.getpalette())
        img.save(tmp_path / "x.gif", transparency=255)
    else:
        Image.fromarray(rgba).save(tmp_path / f"x.{fmt}", lossless=True)
    got = load_image(tmp_path / f"x.{fmt}")
    with Image.open(tmp_path / f"x.{fmt}") as ref:
        want = torch.from_numpy(np.asarray(ref.convert("RGB")).transpose(2, 0, 1).copy())
    assert torch.equal(got.image, want)
    assert got.note == ("alpha (transparency) dropped: 25.0% of pixels are transparent or partly so; the colour "
                        "stored under them is used as is (not composited over a background)")
    opaque = load_image(tmp_path / f"opaque.{fmt}")
    assert opaque.note is None or "alpha" not in opaque.note


@pytest.mark.parametrize("fmt", ["gif", "webp", "png", "tif"])
def test_an_animated_or_multipage_file_is_its_first_frame_and_the_note_says_so(tmp_path, fmt):
    """Found by the breaker: an animated GIF was read as its first frame with nothing said; the note names the
    count left out (animated WebP and PNG, multi-page TIFF alike)."""
    from PIL import Image

    frames = [Image.fromarray(_picture()), Image.fromarray(_picture()[::-1].copy()),
              Image.fromarray(_picture()[:, ::-1].copy())]
    frames[0].save(tmp_path / f"x.{fmt}", save_all=True, append_images=frames[1:], lossless=True)
    got = load_image(tmp_path / f"x.{fmt}")
    with Image.open(tmp_path / f"x.{fmt}") as ref:
        want = torch.from_numpy(np.asarray(ref.convert("RGB")).transpose(2, 0, 1).copy())  # frame 0
    assert torch.equal(got.image, want)
    kind = "pages" if fmt == "tif" else "frames"
    assert got.note is not None and f"first of 3 {kind} read" in got.note and "the other 2 are left out" in got.note
    frames[0].save(tmp_path / f"one.{fmt}")
    assert load_image(tmp_path / f"one.{fmt}").note is None


@pytest.mark.parametrize("name", ["a.jpg", "a.png", "a.tif", "lzw.tif", "a.bmp", "a.webp", "a.gif"])
def test_a_truncated_image_is_a_one_line_failure(tmp_path, name):
    from PIL import Image

    kw = {"compression": "tiff_lzw"} if name == "lzw.tif" else {}
    Image.fromarray(np.kron(_picture(), np.ones((4, 4, 1), np.uint8))).save(tmp_path / name, **kw)
    assert read_image(tmp_path / name).shape == (3, 96, 160)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(ImageReadError, match=rf"cannot read image .*{name}: [^\n]+$"):
        read_image(tmp_path / name)


def test_jpeg_with_trailing_data_is_a_photo_and_a_cut_one_is_refused(tmp_path):
    data = package_file(*BUS).read_bytes()
    (tmp_path / "motion.jpg").write_bytes(data + b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    assert torch.equal(read_image(tmp_path / "motion.jpg"), read_image(package_file(*BUS)))
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_jpeg_cut_inside_its_scan_is_refused_though_its_exif_thumbnail_ends_in_ffd9(tmp_path):
    from PIL import Image

    big = Image.fromarray(np.kron(_picture(), np.ones((8, 8, 1), np.uint8)))
    thumb = io.BytesIO()
    Image.fromarray(_picture()).save(thumb, "JPEG")
    ex = Image.Exif()
    ex[0x0112] = 1
    b = io.BytesIO()
    big.save(b, "JPEG", exif=ex.tobytes() + b"\x00" + thumb.getvalue())  # an APP1 whose bytes hold FFD9
    data = b.getvalue()
    assert data.count(b"\xff\xd9") >= 2
    (tmp_path / "cut.jpg").write_bytes(data[:-200])
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_pixel_cap_refuses_from_the_header(tmp_path):
    from PIL import Image

    Image.fromarray(_picture()).resize((2000, 1500)).save(tmp_path / "big.png")
    assert read_image(tmp_path / "big.png").shape == (3, 1500, 2000)
    with limit_pixels(2000 * 1500 - 1), pytest.raises(ImageReadError, match=r"big\.png.*2000x1500.*max_pixels"):
        read_image(tmp_path / "big.png")
    with pytest.raises(ValueError, match="max_pixels"):
        with limit_pixels(0):
            pass


def test_pixel_cap_not_pillows_decides_above_179_mp(tmp_path):
    """Found by the breaker: above 2 x Pillow's MAX_IMAGE_PIXELS (179 MP) Pillow refused the header itself, so the
    message did not name loader.max_pixels and raising the cap could not admit the file. A PNG whose header declares
    20000 x 10000 = 200 MP (its pixel data is not there: only the header is read) is refused by anonlab's cap."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0)
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match=r"huge\.png.*20000x10000 = 200,000,000 pixels.*loader\.max_pixels"):
        read_image(tmp_path / "huge.png")
    with limit_pixels(300_000_000), pytest.raises(ImageReadError, match=r"huge\.png") as err:
        read_image(tmp_path / "huge.png")  # admitted by the cap; then the missing pixel data is the reason
    assert "max_pixels" not in str(err.value) and "decompression bomb" not in str(err.value).lower()


# ------------------------------------------------------------------------------------------------ video


def test_rotated_phone_videos_decode_upright_like_the_control():
    root = shared_path("cases/rotated_phone_video")
    control = VideoReader(root / "upright_control.mp4")
    assert control.orientation == 1 and control.notes is None
    for name, orientation in (("phone_rot-90.mp4", 6), ("phone_rot180.mp4", 3)):
        r = VideoReader(root / name)
        assert (r.orientation, r.size_hw, len(r)) == (orientation, control.size_hw, len(control)), name
        assert "display matrix" in r.notes
        for k in range(len(r)):
            frame = r.read(k)
            assert tuple(frame.shape[-2:]) == r.size_hw
            # the same content re-encoded: a few grey levels apart, versus ~86 when sideways/upside down
            assert (frame.float() - control.read(k).float()).abs().mean() < 6.0, (name, k)


def _mp4(path: Path, frames: int = 8, streams: int = 1) -> Path:
    import av

    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        outs = []
        for i in range(streams):  # stream 0 is a 1-frame 16x16 thumbnail track when streams == 2
            s = c.add_stream("mpeg4", rate=10)
            s.width, s.height, s.pix_fmt = (16, 16, "yuv420p") if (streams == 2 and i == 0) else (64, 48, "yuv420p")
            outs.append(s)
        for k in range(frames):
            for s in outs:
                if s.width == 16 and k > 0:
                    continue
                arr = np.roll(_picture(s.height, s.width), 4 * k, axis=1)
                for pkt in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    c.mux(pkt)
        for s in outs:
            for pkt in s.encode():
                c.mux(pkt)
    return path


def test_truncated_video_keeps_its_readable_frames_and_reports_the_damage(tmp_path):
    data = _mp4(tmp_path / "full.mp4", frames=20).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    r = VideoReader(tmp_path / "cut.mp4")
    assert 0 < len(r) < 20
    assert "promises 20 frames" in r.notes
    assert r.read(0).shape == (3, 48, 64)


def test_the_main_video_stream_is_read_not_a_thumbnail_track(tmp_path):
    r = VideoReader(_mp4(tmp_path / "two.mp4", frames=6, streams=2))
    assert r.size_hw == (48, 64) and len(r) == 6


# ------------------------------------------------------------------------------------------------ end to end

BENCH = ("experiment=single", "defense.sigma=4", "detectors=[centerface]")


def _recall_by_image(out: Path) -> dict[str, list]:
    rows = pq.read_table(out / "results.parquet").to_pylist()
    return {r["image"]: [r["defense"], r["n_gt"], r["tp"], r["fp"]] for r in rows if r["defense"] == "none"}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["png16", "tiff"])
def test_bench_scores_png16_and_tiff_like_their_control(tmp_path, case):
    root = shared_path(f"cases/{case}")
    out = tmp_path / "out"
    proc = anonlab("bench", "dataset=folder", f"dataset.root={root}", f"dataset.annotations={root / 'coco.json'}",
                   *BENCH, f"out={out}")
    assert proc.returncode == 0, proc.stderr
    got = _recall_by_image(out)
    control = "rgb8_control.png" if case == "png16" else "control.png"
    assert len(got) == 3 and all(v == got[control] for v in got.values()), got
    assert got[control][2] == 1  # the face is found in every file
    run = json.loads((out / "run.json").read_text())
    assert run["failures"] == []


@pytest.mark.slow
def test_bench_on_a_rotated_phone_video_equals_the_control(tmp_path):
    root = shared_path("cases/rotated_phone_video")
    results = {}
    for name in ("upright_control.mp4", "phone_rot-90.mp4"):
        out = tmp_path / name
        proc = anonlab("bench", "dataset=video", f"dataset.path={root / name}", *BENCH,
                       "pseudo_gt.face=[centerface]", "pseudo_gt.person=[]", "pseudo_gt.min_votes.face=1", f"out={out}")
        assert proc.returncode == 0, proc.stderr
        results[name] = ({k.split("/")[1]: v for k, v in _recall_by_image(out).items()},
                         json.loads((out / "run.json").read_text()))
    (ctl, ctl_run), (rot, rot_run) = results["upright_control.mp4"], results["phone_rot-90.mp4"]
    assert rot == ctl and sum(v[1] for v in ctl.values()) > 0  # faces found, the same in every frame
    assert ctl_run["reader_notes"] == {}
    assert "rotated 90° clockwise" in rot_run["reader_notes"][str(root / "phone_rot-90.mp4")]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_nvjpeg_applies_exif_orientation_like_the_cpu(tmp_path):
    from PIL import Image

    from anonlab.io.images import decode_on

    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(np.kron(_picture(), np.ones((4, 4, 1), np.uint8))).save(tmp_path / "o6.jpg", exif=ex, quality=95)
    cpu = read_image(tmp_path / "o6.jpg")
    with decode_on("cuda"):
        gpu = read_image(tmp_path / "o6.jpg")
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape == (3, 160, 96)
    assert (gpu.cpu().float() - cpu.float()).abs().mean() < 1.0


@pytest.mark.slow
def test_bench_pixel_cap_fails_each_image_in_one_line_and_a_bad_cap_stops_first(tmp_path):
    root = shared_path("cases/tiff")
    out = tmp_path / "out"
    proc = anonlab("bench", "dataset=folder", f"dataset.root={root}", f"dataset.annotations={root / 'coco.json'}",
                   *BENCH, "loader.max_pixels=100000", f"out={out}")  # 320x320 = 102,400 pixels each
    assert proc.returncode == 3, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert len(run["failures"]) == 3 and all("max_pixels=100,000" in f["error"] for f in run["failures"])
    proc = anonlab("bench", "dataset=folder", f"dataset.root={root}", *BENCH, "loader.max_pixels=0",
                   f"out={tmp_path / 'bad'}")
    assert proc.returncode == 2 and "loader.max_pixels must be an integer >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cover_art_stream_is_skipped(tmp_path):
    import av

    path = tmp_path / "cover_first.mp4"
    with av.open(str(path), "w") as c:
        cover = c.add_stream("mjpeg", rate=1)  # an attached picture (cover art), larger than the clip
        cover.width, cover.height, cover.pix_fmt = 96, 96, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        v = c.add_stream("mpeg4", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        for pkt in cover.encode(av.VideoFrame.from_ndarray(_picture(96, 96), format="rgb24")):
            c.mux(pkt)
        for pkt in cover.encode():
            c.mux(pkt)
        for k in range(3):
            for pkt in v.encode(av.VideoFrame.from_ndarray(np.roll(_picture(48, 64), k, axis=1), format="rgb24")):
                c.mux(pkt)
        for pkt in v.encode():
            c.mux(pkt)
    with av.open(str(path)) as c:  # (the MP4 muxer stores the cover after the clip's track)
        assert [bool(int(s.disposition) & int(av.stream.Disposition.attached_pic)) for s in c.streams.video] == [False, True]
    r = VideoReader(path)
    assert (r.size_hw, len(r)) == ((48, 64), 3)
    assert r.read(2).shape == (3, 48, 64)


@pytest.mark.slow
def test_bench_scores_the_readable_part_of_a_truncated_video_and_reports_the_damage(tmp_path):
    data = _mp4(tmp_path / "full.mp4", frames=20).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "out"
    proc = anonlab("bench", "dataset=video", f"dataset.path={tmp_path / 'cut.mp4'}", *BENCH,
                   "pseudo_gt.face=[centerface]", "pseudo_gt.person=[]", "pseudo_gt.min_votes.face=1", f"out={out}")
    assert proc.returncode in (0, 3), proc.stderr  # 3 when the last, partial frame does not decode
    assert "Traceback" not in proc.stderr and "reader_notes" in proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert "promises 20 frames" in run["reader_notes"][str(tmp_path / "cut.mp4")]
    assert 0 < run["n_images"] < 20

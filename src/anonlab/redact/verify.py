"""Verification of written outputs: decode each one again (as a viewer would) and look for what the redaction
missed with an independent panel of checks, i.e. detectors that took no part in the redaction, at low thresholds.

Writes ``leaks.json`` (a list of ``{file, frame, time_s, box, check, score}``; ``box`` xyxy pixels of the upright
output frame, ``time_s`` the frame's presentation time) and ``leaks.png`` (a contact sheet of the leaking regions,
only when there are leaks). The command exits 4 when anything leaks.

Hook for identity attackers (another issue): any object with ``name`` and ``__call__(images uint8 (B, 3, H, W))
-> Detections`` (boxes where an identity can be recovered, scores in [0, 1]) is a :class:`LeakCheck`; pass it in
``extra_checks`` and its findings are reported like a detector's.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from anonlab.io.images import load_image, write_image
from anonlab.io.video import VIDEO_SUFFIXES, VideoReader
from anonlab.types import Detections

#: the default panel, disjoint from the redaction ensemble: MTCNN (the strongest face detector anonlab has besides
#: the ensemble's three; its config uses 0.9) and dlib's HOG face detector (0.5 is its own SVM decision). Each
#: threshold sits just above the highest false alarm on the redacted default images and phone clips (2026-11-30:
#: MTCNN 0.77 on zidane's crowd, dlib HOG 0.59 on astronaut's mission patch), well below real faces on the
#: unredacted images (MTCNN >= 0.99, dlib HOG >= 0.85 except camera.png's 0.42). OpenCV's Haar cascade is offered
#: (``--verify-with haar``) but not a default: it cannot be thresholded (0.99 on zidane's shirt after redaction).
DEFAULT_PANEL = (("mtcnn", 0.8), ("dlib_hog", 0.65))
#: side of each tile of the contact sheet (pixels)
TILE = 96


class LeakCheck(Protocol):
    """One check of the panel: ``name`` and ``__call__(images uint8 (B, 3, H, W)) -> Detections``."""

    name: str

    def __call__(self, images: Tensor) -> Detections: ...


@dataclass(frozen=True)
class Leak:
    """One finding: ``file`` (output path), ``frame`` (0 for an image), ``time_s`` (None for an image), ``box``
    xyxy pixels of the upright output, ``check`` (which check fired), ``score`` in [0, 1]."""

    file: str
    frame: int
    time_s: float | None
    box: list[float]
    check: str
    score: float


class _DetectorCheck:
    def __init__(self, name: str, threshold: float, det) -> None:
        self.name, self.threshold, self.det = name, threshold, det

    def __call__(self, images: Tensor) -> Detections:
        return self.det(images).above(self.threshold)


def panel_checks(specs, device: str) -> list[LeakCheck]:
    """Build the panel from ``(detector name, threshold)`` pairs (conf/detector/<name>.yaml, threshold
    overridden); raises :class:`~anonlab.redact.core.RedactError` for an unknown name or bad value."""
    from anonlab.redact.core import Ensemble

    return [_DetectorCheck(n, t, d) for n, t, d in Ensemble(tuple(specs), device).members]


def _scan(file: str, frames: Tensor, frame_ids: list[int], times: list[float | None], checks: list[LeakCheck],
          crops: list[Tensor]) -> list[Leak]:
    """Run every check on ``frames`` (B, 3, H, W) uint8 (frame numbers ``frame_ids``, presentation ``times``)."""
    leaks = []
    for check in checks:
        dets = check(frames).to("cpu")
        for box, score, b in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.batch_idx.tolist()):
            leaks.append(Leak(file, frame_ids[b], times[b], [round(v, 1) for v in box], check.name, round(score, 4)))
            x1, y1, x2, y2 = (round(v) for v in box)
            crop = frames[b, :, max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)].cpu()
            if crop.numel():
                crops.append(torch.nn.functional.interpolate(crop[None].float(), size=(TILE, TILE),
                                                             mode="bilinear", antialias=True)[0])
    return leaks


def verify(outputs: list[str | Path], checks: list[LeakCheck], device: str = "cpu", stride: int = 1,
           batch: int = 8, tick=None) -> tuple[list[Leak], list[Tensor], list[str]]:
    """Decode each output and run every check on it (videos: every ``stride``-th frame). Returns (leaks, crops
    ``float (3, TILE, TILE)`` of the leaking regions, failures: one line per output that could not be decoded)."""
    leaks: list[Leak] = []
    crops: list[Tensor] = []
    failures: list[str] = []
    dev = torch.device(device)
    for out in map(Path, outputs):
        try:
            if out.suffix.lower() in VIDEO_SUFFIXES:
                reader = VideoReader(out)
                try:
                    ks = list(range(0, len(reader), stride))
                    for start in range(0, len(ks), batch):
                        frames, times = [], []
                        for k in ks[start:start + batch]:
                            frames.append(reader.read(k))
                            tb = reader.time_base
                            times.append(float(reader.last_pts * tb) if reader.last_pts is not None and tb else None)
                        leaks.extend(_scan(str(out), torch.stack(frames).to(dev), ks[start:start + batch], times,
                                           checks, crops))
                        if tick:
                            tick(len(frames))
                finally:
                    reader.close()
            else:
                img = load_image(out).image.to(dev)[None]
                leaks.extend(_scan(str(out), img, [0], [None], checks, crops))
                if tick:
                    tick(1)
        except (ValueError, FileNotFoundError) as e:  # ImageReadError is a ValueError
            failures.append(f"cannot verify {out}: {str(e).splitlines()[0]}")
    return leaks, crops, failures


def write_leaks(out_dir: Path, leaks: list[Leak], crops: list[Tensor]) -> tuple[Path, Path | None]:
    """Write ``leaks.json`` (always) and ``leaks.png`` (contact sheet, when there are crops) atomically into
    ``out_dir`` (an old ``leaks.png`` is removed when nothing leaks)."""
    from torchvision.utils import make_grid

    from anonlab.redact.core import partial_path

    path = out_dir / "leaks.json"
    tmp = partial_path(path)
    tmp.write_text(json.dumps([asdict(x) for x in leaks], indent=1))
    os.replace(tmp, path)
    sheet = out_dir / "leaks.png"
    if not crops:
        sheet.unlink(missing_ok=True)
        return path, None
    grid = make_grid(torch.stack(crops[:400]), nrow=min(10, len(crops)), padding=2, pad_value=255)
    tmp = partial_path(sheet)
    try:
        write_image(tmp, grid.round().clamp(0, 255).to(torch.uint8), "PNG")
        os.replace(tmp, sheet)
    finally:
        tmp.unlink(missing_ok=True)
    return path, sheet

"""Verification of written outputs: decode each one again (as a viewer would) and look for what the redaction
missed with an independent panel of checks, i.e. detectors that took no part in the redaction, at low thresholds.

Writes ``leaks.json`` (a list of ``{file, frame, time_s, box, check, score}``; ``box`` xyxy pixels of the upright
output frame, ``time_s`` the frame's presentation time) and ``leaks.png`` (a contact sheet of the leaking regions,
only when there are leaks). The command exits 4 when anything leaks.

Identity check (``identity``: recognizers such as ``dlib_resnet``): where the panel finds a face in the output, that
box is cropped from the output and from the clean input frame and matched
(:func:`anonlab.identity.leak.match_to_clean`); a match is a leak with check ``identity:<recognizer>`` and score the
distance to the clean face (recognizer units, below its same-person threshold). Faces smaller than the recognizer's
``min_face_px`` are skipped and counted.

Hook for identity attackers (another issue): any object with ``name`` and ``__call__(images uint8 (B, 3, H, W))
-> Detections`` (boxes where an identity can be recovered, scores in [0, 1]) is a :class:`LeakCheck`; pass it in
``extra_checks`` and its findings are reported like a detector's.
"""

from __future__ import annotations

import json
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
#: threshold sits just above the highest false alarm on the redacted default images, phone clips and the synthetic
#: walking clip (2026-11-30: MTCNN 0.82 on a pedestrian's hands below the filled face, frame 15 of
#: benchmarks/redact.py's clip, and 0.77 on zidane's crowd; dlib HOG 0.59 on astronaut's mission patch), well below
#: real faces on the unredacted images (MTCNN >= 0.99, dlib HOG >= 0.85 except camera.png's 0.42). Neither sees
#: faces under 20 px (MTCNN's min_face_size; dlib HOG upsampled once: ~35 px): small faces are verified only by a panel the user
#: adds (``--verify-with``), e.g. a detector run on upscaled frames. OpenCV's Haar cascade is offered
#: (``--verify-with haar``) but not a default: it cannot be thresholded (0.99 on zidane's shirt after redaction).
DEFAULT_PANEL = (("mtcnn", 0.85), ("dlib_hog", 0.65))
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
        from anonlab.redact.core import detect_chunked

        return detect_chunked(self.det, images).above(self.threshold)


def build_recognizers(names, device: str) -> list:
    """Recognizers by name (conf/recognizer/<name>.yaml); raises :class:`~anonlab.redact.core.RedactError` (one
    line) for an unknown name or one whose package is missing."""
    from anonlab.build import BenchError, build_config, group_config
    from anonlab.recognizers import RECOGNIZERS
    from anonlab.redact.core import RedactError

    out = []
    for name in names:
        try:
            out.append(build_config(group_config("recognizer", name, RECOGNIZERS), f"recognizer {name}").eval())
        except BenchError as e:
            raise RedactError(str(e)) from None
        except ImportError as e:
            raise RedactError(f"--identity {name} needs the package {e.name!r} (or pass --identity '')") from None
    return out


def panel_checks(specs, device: str) -> list[LeakCheck]:
    """Build the panel from ``(detector name, threshold)`` pairs (conf/detector/<name>.yaml, threshold
    overridden); raises :class:`~anonlab.redact.core.RedactError` for an unknown name, a bad value, or a detector
    that cannot run on ``device`` (:meth:`~anonlab.redact.core.Ensemble.check`)."""
    from anonlab.redact.core import Ensemble

    panel = Ensemble(tuple(specs), device)
    panel.check()
    return [_DetectorCheck(n, t, d) for n, t, d in panel.members]


class IdentityStats:
    """Counts of the identity check: faces ``checked``, ``skipped`` (smaller than the recognizer's min_face_px, or
    no clean frame of the same size), ``matched``."""

    def __init__(self) -> None:
        self.checked = self.skipped = self.matched = 0


def _identity(file: str, frames: Tensor, clean: Tensor | None, frame_ids: list[int], times: list[float | None],
              found: list[Detections], recognizers: list, stats: IdentityStats) -> list[Leak]:
    """Match every panel finding to the clean face at the same place (:func:`match_to_clean`)."""
    from anonlab.identity.leak import match_to_clean

    dets = Detections.cat(found, device="cpu") if found else Detections.empty("cpu")
    if len(dets) == 0 or not recognizers:
        return []
    if clean is not None and frames.shape[:2] == clean.shape[:2] and all(
            0 <= a - b <= 1 for a, b in zip(frames.shape[2:], clean.shape[2:])):
        frames = frames[..., :clean.shape[2], :clean.shape[3]]  # VideoWriter pads odd sizes by a row/column
    if clean is None or clean.shape != frames.shape:
        stats.skipped += len(dets) * len(recognizers)
        return []
    leaks = []
    for rec in recognizers:
        m = match_to_clean(rec, clean.cpu(), frames.cpu(), dets.boxes, dets.batch_idx)
        stats.checked += int(m.embedded.sum())
        stats.skipped += m.n_skipped
        stats.matched += int(m.matched.sum())
        for k in m.matched.nonzero().flatten().tolist():
            b = int(dets.batch_idx[k])
            leaks.append(Leak(file, frame_ids[b], times[b], [round(v, 1) for v in dets.boxes[k].tolist()],
                              f"identity:{rec.name}", round(float(m.distance[k]), 4)))
    return leaks


def _scan(file: str, frames: Tensor, frame_ids: list[int], times: list[float | None], checks: list[LeakCheck],
          crops: list[Tensor], found: list[Detections] | None = None) -> list[Leak]:
    """Run every check on ``frames`` (B, 3, H, W) uint8 (frame numbers ``frame_ids``, presentation ``times``);
    the detections are appended to ``found`` (for the identity check)."""
    leaks = []
    for check in checks:
        dets = check(frames).to("cpu")
        if found is not None:
            found.append(dets)
        for box, score, b in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.batch_idx.tolist()):
            leaks.append(Leak(file, frame_ids[b], times[b], [round(v, 1) for v in box], check.name, round(score, 4)))
            x1, y1, x2, y2 = (round(v) for v in box)
            crop = frames[b, :, max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)].cpu()
            if crop.numel():
                crops.append(torch.nn.functional.interpolate(crop[None].float(), size=(TILE, TILE),
                                                             mode="bilinear", antialias=True)[0])
    return leaks


def verify(outputs: list[str | Path], checks: list[LeakCheck], device: str = "cpu", stride: int = 1,
           batch: int = 8, tick=None, sources: dict[str, str] | None = None, recognizers: list | None = None,
           stats: IdentityStats | None = None) -> tuple[list[Leak], list[Tensor], list[str]]:
    """Decode each output and run every check on it (videos: every ``stride``-th frame). Returns (leaks, crops
    ``float (3, TILE, TILE)`` of the leaking regions, failures: one line per output that could not be decoded).
    With ``recognizers`` and ``sources`` (output path -> its input path), each face the panel finds is also
    matched to the clean input (see the module docstring); counts go to ``stats``."""
    leaks: list[Leak] = []
    crops: list[Tensor] = []
    failures: list[str] = []
    dev = torch.device(device)
    recognizers = recognizers or []
    stats = stats if stats is not None else IdentityStats()
    for out in map(Path, outputs):
        src = (sources or {}).get(str(out))
        try:
            if out.suffix.lower() in VIDEO_SUFFIXES:
                reader = VideoReader(out)
                clean_reader = None
                try:
                    ks = list(range(0, len(reader), stride))
                    for start in range(0, len(ks), batch):
                        frames, times = [], []
                        for k in ks[start:start + batch]:
                            frames.append(reader.read(k))
                            tb = reader.time_base
                            times.append(float(reader.last_pts * tb) if reader.last_pts is not None and tb else None)
                        found: list[Detections] = []
                        batch_frames = torch.stack(frames).to(dev)
                        leaks.extend(_scan(str(out), batch_frames, ks[start:start + batch], times, checks, crops,
                                           found))
                        if recognizers and src and any(len(d) for d in found):
                            clean_reader = clean_reader or VideoReader(src)
                            clean = torch.stack([clean_reader.read(k) for k in ks[start:start + batch]])
                            leaks.extend(_identity(str(out), batch_frames, clean, ks[start:start + batch], times,
                                                   found, recognizers, stats))
                        if tick:
                            tick(len(frames))
                finally:
                    reader.close()
                    if clean_reader is not None:
                        clean_reader.close()
            else:
                img = load_image(out).image.to(dev)[None]
                found = []
                leaks.extend(_scan(str(out), img, [0], [None], checks, crops, found))
                if recognizers and src and any(len(d) for d in found):
                    clean = load_image(src).image[None]
                    leaks.extend(_identity(str(out), img, clean, [0], [None], found, recognizers, stats))
                if tick:
                    tick(1)
        except (ValueError, FileNotFoundError) as e:  # ImageReadError is a ValueError
            failures.append(f"cannot verify {out}: {str(e).splitlines()[0]}")
    return leaks, crops, failures


def earlier_leaks(out_dir: Path, rewritten: set[str]) -> list[dict]:
    """The records of an existing ``out_dir/leaks.json`` (an earlier run's) about files that are still there and
    that this run did not write (``rewritten``: output paths as in :attr:`Leak.file`). A later run into the same
    folder keeps them, so the findings about a leaking file do not vanish because other files were redacted next
    to it (found by the breaker: a second run wrote ``[]`` and removed leaks.png while the leaking file stayed).
    An unreadable file gives none."""
    try:
        doc = json.loads((out_dir / "leaks.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(doc, list):
        return []
    return [x for x in doc if isinstance(x, dict) and isinstance(x.get("file"), str)
            and x["file"] not in rewritten and Path(x["file"]).is_file()]


def write_leaks(out_dir: Path, leaks: list[Leak], crops: list[Tensor],
                earlier: list[dict] = ()) -> tuple[Path, Path | None]:
    """Write ``leaks.json`` (``earlier`` records, :func:`earlier_leaks`, then ``leaks``; always) and ``leaks.png``
    (contact sheet of this run's crops, when there are some) atomically into ``out_dir``. An old ``leaks.png`` is
    kept when only earlier records remain, and removed when nothing leaks at all."""
    from torchvision.utils import make_grid

    from anonlab.io.atomic import atomic_path, write_text

    path = write_text(out_dir / "leaks.json", json.dumps(list(earlier) + [asdict(x) for x in leaks], indent=1))
    sheet = out_dir / "leaks.png"
    if not crops:
        if not earlier:
            sheet.unlink(missing_ok=True)
        return path, sheet if sheet.exists() else None
    grid = make_grid(torch.stack(crops[:400]), nrow=min(10, len(crops)), padding=2, pad_value=255)
    with atomic_path(sheet) as tmp:
        write_image(tmp, grid.round().clamp(0, 255).to(torch.uint8), "PNG")
    return path, sheet

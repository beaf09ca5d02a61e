"""What a patch minimises: a detector's dense scores (per objective), non-printability and total variation.

Objectives (Thys et al. 2019, "Fooling automated surveillance cameras"): ``obj`` (objectness), ``cls`` (class
probability of person), ``obj_cls`` (their product, the detector's own person score) for person detectors with an
objectness (YOLOX); ``cls`` alone for heads without one (Ultralytics v8+, NanoDet, whose class scores are GFL
IoU-aware quality scores: the detector's own person score);
``heatmap`` (the face score map) for dense face detectors (CenterFace, YuNet, UltraFace). The detection loss of an
image is its highest score over all anchors; the batch loss is the mean over images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from anonlab.detectors import DETECTORS
from anonlab.types import Detector

OBJECTIVES = ("obj", "cls", "obj_cls", "heatmap")
REQUIRES = frozenset({"differentiable"})

#: Stand-in printable palette, NOT measured: the 27 colours of a 3-level grid (0.1, 0.5, 0.9 per channel), i.e. a
#: gamut without deep black, pure white or fully saturated primaries, roughly what an office print photographed
#: under daylight spans. Sharif et al. 2016 and Thys et al. 2019 measured theirs (a printed colour chart,
#: photographed); do that for a real print and pass the file as ``nps.palette`` (one "r, g, b" line per colour,
#: floats in [0, 1], Thys et al.'s ``30values.txt`` format).
STAND_IN_PALETTE: tuple[tuple[float, float, float], ...] = tuple(
    (r, g, b) for r in (0.1, 0.5, 0.9) for g in (0.1, 0.5, 0.9) for b in (0.1, 0.5, 0.9)
)


class NotDifferentiableError(TypeError):
    """The detector has no torch graph from pixels to scores: a patch cannot be trained against it."""


def differentiable_detectors() -> list[str]:
    """Registry names of the detectors that declare ``"differentiable"``."""
    return [n for n in DETECTORS.names() if REQUIRES <= DETECTORS.get(n).capabilities]


def check_differentiable(name: str) -> None:
    """Raise :class:`NotDifferentiableError` naming the differentiable detectors unless ``name`` is one (class attributes only: no
    weights are loaded)."""
    cls = DETECTORS.get(name)
    if missing := REQUIRES - cls.capabilities:
        raise NotDifferentiableError(f"patch training needs a detector with {sorted(missing)}; {name!r} has "
                        f"{sorted(cls.capabilities) or 'none'}; suitable: {', '.join(differentiable_detectors())}")


def valid_objectives(detector: Detector | type[Detector]) -> tuple[str, ...]:
    """The objectives a detector (instance or class) declares (:class:`anonlab.types.DenseScorer`)."""
    return tuple(detector.objectives)


def default_objective(detector: Detector | type[Detector]) -> str | None:
    """The detector's own score: ``obj_cls`` where it has an objectness, else its only objective (None: none)."""
    valid = valid_objectives(detector)
    return "obj_cls" if "obj_cls" in valid else (valid[0] if len(valid) == 1 else None)


def check_objective(detector: Detector | type[Detector], objective: str) -> None:
    """Raise ``ValueError`` unless ``detector`` declares ``objective`` (checked when a trainer is built)."""
    valid = valid_objectives(detector)
    if objective not in valid:
        what = f"valid for {detector.name}: {', '.join(valid)}" if valid else f"{detector.name} has no dense scores"
        if objective in ("obj", "obj_cls") and valid == ("cls",):
            what += " (it has no objectness score)"
        raise ValueError(f"unknown or unsuitable objective {objective!r}; {what} (all: {', '.join(OBJECTIVES)})")


def score_fn(detector: Detector, objective: str) -> Callable[[Tensor], Tensor]:
    """``f(x float (B, 3, H, W) RGB in [0, 1]) -> (B, A)`` dense scores in [0, 1] to minimise, differentiable."""
    check_objective(detector, objective)
    return lambda x: detector.dense_scores(x, objective)


def detection_loss(scores: Tensor) -> Tensor:
    """Mean over images of the highest score over anchors, for ``scores (B, A)``."""
    return scores.amax(dim=1).mean()


def load_palette(path: str | Path | None, device: torch.device | str = "cpu") -> Tensor:
    """(K, 3) float32 printable colours: the stand-in palette, or a file of "r, g, b" lines in [0, 1]."""
    if path is None:
        return torch.tensor(STAND_IN_PALETTE, dtype=torch.float32, device=device)
    p = Path(path)
    try:
        rows = [[float(v) for v in line.replace(",", " ").split()] for line in p.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    except OSError as e:
        raise FileNotFoundError(f"cannot read palette {p}: {e.strerror or e}") from None
    except ValueError:
        raise ValueError(f"palette {p}: expected lines of three numbers 'r, g, b' in [0, 1]") from None
    t = torch.tensor(rows, dtype=torch.float32)
    if t.ndim != 2 or t.shape[1] != 3 or not len(t) or t.min() < 0 or t.max() > 1:
        raise ValueError(f"palette {p}: expected K >= 1 lines of three numbers in [0, 1], got shape {tuple(t.shape)}")
    return t.to(device)


def non_printability(patch: Tensor, palette: Tensor) -> Tensor:
    """Mean over pixels of the distance from each colour of ``patch`` (3, H, W) to its nearest palette colour."""
    d = (patch.permute(1, 2, 0)[:, :, None, :] - palette[None, None]).pow(2).sum(-1).add(1e-6).sqrt()
    return d.amin(dim=-1).mean()


def total_variation(patch: Tensor) -> Tensor:
    """Mean absolute difference between horizontally and vertically adjacent pixels of ``patch`` (3, H, W)."""
    return (patch[:, :, 1:] - patch[:, :, :-1]).abs().mean() + (patch[:, 1:, :] - patch[:, :-1, :]).abs().mean()

"""Adversaries (attackers) of the identity evaluation, registered by name (``conf/adversary/<name>.yaml``).

An adversary says how the attacker gets the two sides it matches: the enrolled **gallery** (clean photos of the
people, or photos redacted like the probe) and the redacted **probe**, and how it finds the face in the probe:

- ``naive``: clean gallery; the probe's face located by an off-the-shelf face detector run on the *redacted* image
  (the detection overlapping the person's clean face box at IoU >= ``iou``; none: the face is "not embedded",
  counted apart from a misidentified one);
- ``located``: clean gallery; the probe's face at its clean (ground-truth) box: the attacker knows where the face
  is (a tracker, or the body, gives it);
- ``parrot`` (Newton, Sweeney and Malin 2005, "Preserving privacy by de-identifying face images"): the gallery is
  redacted with the same defense and strength before matching; faces at their clean boxes, as ``located``.

The attackers that change the probe (``restoring``) or train on redacted faces (``trained``) come with the
h-attackers branch and are registered here when it is merged; they are left out rather than stubbed.
"""

from __future__ import annotations

from typing import ClassVar

from anonlab.registry import Registry

ADVERSARIES: Registry[object] = Registry("adversary")


class Adversary:
    """What the evaluation needs of an attacker: ``gallery`` (``clean`` | ``redacted``) and ``locate``
    (``gt``: the clean face box | ``detector``: a face detector on the redacted probe)."""

    name: ClassVar[str] = ""
    gallery: ClassVar[str] = "clean"
    locate: ClassVar[str] = "gt"

    def params(self) -> dict:
        return {}


@ADVERSARIES.register("naive")
class Naive(Adversary):
    """Clean gallery, probe face found by ``detector`` (a ``conf/detector`` name) on the redacted image at its own
    threshold, matched to the clean face box at IoU >= ``iou`` (the detection benchmark's rule, pycocotools 0.5)."""

    locate: ClassVar[str] = "detector"

    def __init__(self, detector: str = "yunet", iou: float = 0.5) -> None:
        if not isinstance(detector, str) or not detector:
            raise ValueError(f"naive: detector must be a conf/detector name, got {detector!r}")
        if isinstance(iou, bool) or not isinstance(iou, (int, float)) or not 0.0 < iou <= 1.0:
            raise ValueError(f"naive: iou must be a number in (0, 1], got {iou!r}")
        self.detector = detector
        self.iou = float(iou)

    def params(self) -> dict:
        return {"detector": self.detector, "iou": self.iou}


@ADVERSARIES.register("located")
class Located(Adversary):
    """Clean gallery, probe face at its clean box (the attacker knows where the face is)."""


@ADVERSARIES.register("parrot")
class Parrot(Adversary):
    """Gallery redacted with the same defense and strength as the probe; faces at their clean boxes."""

    gallery: ClassVar[str] = "redacted"

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

- ``restoring``: ``located``, but the probe is first restored as far as the defense allows
  (:func:`anonlab.identity.restore.restore`: Richardson-Lucy deconvolution for a known Gaussian sigma, bicubic
  upscaling of a pixelation's block grid; nothing for a solid fill);
- ``trained`` / ``trained_cnn`` (McPherson, Shokri and Shmatikov 2016): closed set. For each person, a random
  ``test_per_person`` images are probes and the rest are the attacker's training images, redacted like the probes;
  ``trained`` fits a linear probe on the recognizer's embeddings of the redacted faces, ``trained_cnn`` a small CNN
  on the redacted pixels (:mod:`anonlab.identity.trained`). They report rank-1 / rank-5 (top-1 / top-5) only:
  a classifier has no verification threshold, so the verification columns are NaN.
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
    #: restore the probe before matching (:func:`anonlab.identity.restore.restore`)
    restores: ClassVar[bool] = False
    #: a closed-set classifier fitted on redacted training images: "linear_probe" | "cnn"; None: matching
    trained: ClassVar[str | None] = None

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


@ADVERSARIES.register("restoring")
class Restoring(Adversary):
    """Clean gallery; the probe restored (deconvolution / upscaling with the defense's known parameters) and
    embedded at its clean box. ``method``: ``richardson_lucy`` or ``wiener`` (scikit-image), for blurs."""

    restores: ClassVar[bool] = True

    def __init__(self, method: str = "richardson_lucy") -> None:
        from anonlab.identity.restore import METHODS

        if method not in METHODS:
            raise ValueError(f"restoring: method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method

    def params(self) -> dict:
        return {"method": self.method}


class _Trained(Adversary):
    def __init__(self, test_per_person: int = 2, seed: int = 0) -> None:
        for key, v, low in (("test_per_person", test_per_person, 1), ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{self.name}: {key} must be an integer >= {low}, got {v!r}")
        self.test_per_person, self.seed = test_per_person, seed

    def params(self) -> dict:
        return {"test_per_person": self.test_per_person, "seed": self.seed}


@ADVERSARIES.register("trained")
class Trained(_Trained):
    """McPherson et al.'s attacker with a linear probe (logistic regression) on the recognizer's embeddings of
    redacted training faces; ``test_per_person`` images of each person (drawn with ``seed``) are the probes."""

    trained: ClassVar[str | None] = "linear_probe"


@ADVERSARIES.register("trained_cnn")
class TrainedCNN(_Trained):
    """McPherson et al.'s attacker with a small CNN trained from scratch on the redacted face pixels (the face
    box's crop; the whole image for pre-cropped sets); split as :class:`Trained`."""

    trained: ClassVar[str | None] = "cnn"

"""The dataset registry, the ``Dataset`` base (an iterable of :class:`~anonlab.types.Sample`), and the one place
where every loader's ground truth is normalised to its frame (:func:`normalize_ground_truth`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from anonlab.io.images import ImageReadError  # noqa: F401  (re-exported)
from anonlab.registry import Registry
from anonlab.types import KINDS, GroundTruth, Sample


def normalize_ground_truth(gt: GroundTruth, size_hw: tuple[int, int] | torch.Size) -> GroundTruth:
    """``gt`` fitted to a frame of ``size_hw = (H, W)`` pixels: every box (faces and persons, ignored or not)
    clipped to ``[0, W] x [0, H]``, and every box that has zero width or height after clipping (degenerate in the
    annotation file, or wholly outside the frame) **dropped**, with its id and ignore flag, so the three stay
    aligned. Boxes are ``float32 (N, 4)`` xyxy pixels of the frame as loaded (EXIF applied).

    Why dropped rather than marked ignore: no detection can overlap a zero-area box (IoU 0 with everything, and
    pycocotools' crowd IoU, intersection over detection area, is 0 too), so such a box could only ever be a miss
    (if real) or nothing (if ignored); dropping it is the same for AP and rows, and keeps it out of face-height
    statistics (``median_face_height``). WIDER FACE's official files contain such boxes. Clipping follows the
    COCO / PASCAL convention that annotations lie inside the image; a face cut by the frame edge is scored on its
    visible part, which is all a detector can see.
    """
    h, w = int(size_hw[0]), int(size_hw[1])
    parts: dict[str, Any] = {}
    for kind in KINDS:
        boxes, ids, ignore = gt.boxes(kind), gt.ids(kind), gt.ignore(kind)
        if len(boxes) == 0:
            parts.update({f"{kind}s": boxes, f"{kind}_ids": ids, f"ignore_{kind}s": ignore})
            continue
        limit = torch.tensor([w, h, w, h], dtype=boxes.dtype)
        clipped = torch.minimum(boxes.clamp(min=0), limit)
        keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        parts.update({f"{kind}s": clipped[keep], f"{kind}_ids": ids[keep], f"ignore_{kind}s": ignore[keep]})
    return GroundTruth(**parts, pseudo_gt=gt.pseudo_gt)


def fingerprint(files: list[Path]) -> list[tuple[str, int, int]]:
    """``(path, size in bytes, modification time in ns)`` of each file (``-1, -1`` for a file that is gone), cheap:
    one ``stat`` each, no reading. Used in the job hash (:meth:`Dataset.source_files`)."""
    out = []
    for f in files:
        try:
            st = Path(f).stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(f), -1, -1))
    return out


class Dataset:
    """Streams ``Sample``s (one image + ground truth each); never loads the whole set into memory.

    ``__iter__`` yields samples in a stable order. A sample that cannot be used raises one of
    :class:`~anonlab.types.SampleError` from ``load(i)`` (:class:`ImageReadError`, a subclass, for a file that does not decode,
    :class:`~anonlab.types.SampleError` for any other problem of that sample alone, e.g. a size that differs from
    its annotation); ``__iter__`` is built on ``refs()`` + ``load`` so the engine can record the failure and go on.
    Every ``load`` builds its result with :meth:`sample`, which normalises the ground truth to the frame.
    """

    name: str = ""
    #: object kinds this dataset has no human annotation for: the engine fills them with consensus pseudo
    #: ground truth from its detector panel and flags those rows ``pseudo_gt``
    pseudo_kinds: tuple[str, ...] = ()
    #: True when ``load`` reads one decoder stream (a video): the engine then calls it from one thread, in order
    sequential: bool = False

    @property
    def annotated(self) -> bool:
        """True when people annotated at least one kind of object (faces or persons) in this dataset."""
        return len(self.pseudo_kinds) < len(KINDS)

    @staticmethod
    def sample(image_id: str, image: Tensor, gt: GroundTruth, path: str = "",
               notes: dict[str, str] | None = None) -> Sample:
        """The finished sample: ``gt`` normalised to ``image``'s ``(H, W)`` by :func:`normalize_ground_truth` (boxes it
        drops are counted in a note on the file, so run.json's ``reader_notes`` says so);
        ``notes`` are the reader's notes on the file (see :class:`~anonlab.types.Sample`)."""
        fitted = normalize_ground_truth(gt, image.shape[-2:])
        notes = dict(notes or {})
        dropped = {k: len(gt.boxes(k)) - len(fitted.boxes(k)) for k in KINDS}
        if any(dropped.values()):  # said in run.json (reader_notes), never dropped silently
            what = " and ".join(f"{n} {k} box(es)" for k, n in dropped.items() if n)
            line = (f"{what} of zero area inside the frame (degenerate, or wholly outside it) dropped from the "
                    "ground truth")
            key = path or image_id
            notes[key] = f"{notes[key]}; {line}" if key in notes else line
        return Sample(image_id, image, fitted, path, notes)

    def refs(self) -> list[str]:
        """Stable identifiers (image ids) of all samples, cheap: no decoding."""
        raise NotImplementedError

    def source_files(self) -> list[Path]:
        """The user's files the samples are read from (images, videos, annotation files), for :func:`fingerprint`:
        the engine puts their sizes and modification times into the job's identity, so a file replaced under the
        same name never resumes another file's result shards (found by the breaker). Default: none, for datasets
        read from fixed public releases; datasets over the user's own files override it."""
        return []

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.refs())

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.load(i)


DATASETS: Registry[Dataset] = Registry("dataset")

"""The ``pennfudan`` dataset (Penn-Fudan Pedestrian Database, Wang et al., ACCV 2007) in its original layout.

Also home of :func:`parse_pascal_v1`, the parser of the "PASCAL Annotation Version 1.00" text files shared with
the ``inria`` dataset.

Layout read here (the official ``PennFudanPed.zip``)::

    PennFudanPed/PNGImages/<name>.png        RGB images
    PennFudanPed/Annotation/<name>.txt       PASCAL v1.00 text, one box per pedestrian
    PennFudanPed/PedMasks/<name>_mask.png    uint8 instance ids: 0 background, i = pedestrian i of the annotation

Boxes: the annotation's ``(Xmin, Ymin) - (Xmax, Ymax)`` are inclusive pixel indices with the top-left pixel at
``# Top left pixel co-ordinates`` (``(1, 1)`` here, and the PASCAL v1 default when the line is absent). They become
continuous 0-based xyxy edges ``(Xmin - ox, Ymin - oy, Xmax - ox + 1, Ymax - oy + 1)``: checked against the masks,
whose instance ``i`` spans exactly that box on the released data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.io.images import ImageReadError, load_image
from anonlab.types import GroundTruth, Sample, SampleError

_SIZE = re.compile(r"^Image size \(X x Y x C\)\s*:\s*(\d+)\s*x\s*(\d+)(?:\s*x\s*(\d+))?", re.M)
_FILE = re.compile(r'^Image filename\s*:\s*"([^"]+)"', re.M)
_COUNT = re.compile(r"^Objects with ground truth\s*:\s*(\d+)\s*\{([^}]*)\}", re.M)
_ORIGIN = re.compile(r"^#\s*Top left pixel co-ordinates\s*:\s*\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)", re.M)
_BOX = re.compile(
    r'^Bounding box for object (\d+) "([^"]*)" \(Xmin, Ymin\) - \(Xmax, Ymax\)\s*:\s*'
    r"\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)\s*-\s*\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)",
    re.M,
)


@dataclass(frozen=True)
class PascalAnnotation:
    """One PASCAL v1.00 annotation file. ``boxes`` are ``float32 (N, 4)`` 0-based xyxy pixel edges, in object order;
    ``objects`` the 1-based object numbers; ``size_hw`` the declared ``(H, W)`` (None when the line is absent)."""

    file: Path
    image_name: str
    size_hw: tuple[int, int] | None
    labels: tuple[str, ...]
    objects: tuple[int, ...]
    boxes: Tensor


def parse_pascal_v1(path: str | Path) -> PascalAnnotation:
    """Parse a "PASCAL Annotation Version 1.00" text file (Penn-Fudan, INRIA Person).

    Reads ``Image filename``, ``Image size (X x Y x C)``, ``Objects with ground truth : N { ... }``,
    ``# Top left pixel co-ordinates : (ox, oy)`` (default ``(1, 1)``) and every ``Bounding box for object i``
    line. Raises ``ValueError`` naming the file when the filename line is missing, the box count differs from N,
    an object number repeats, or a box has ``Xmax < Xmin`` / ``Ymax < Ymin``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("latin-1")
    except OSError as e:
        raise FileNotFoundError(f"cannot read PASCAL annotation {path}: {e.strerror or e}") from e
    m = _FILE.search(text)
    if m is None:
        raise ValueError(f"PASCAL annotation {path}: no 'Image filename : \"...\"' line")
    image_name = m.group(1)
    size = _SIZE.search(text)
    size_hw = (int(size.group(2)), int(size.group(1))) if size else None
    origin = _ORIGIN.search(text)
    ox, oy = (int(origin.group(1)), int(origin.group(2))) if origin else (1, 1)
    objects, labels, rows = [], [], []
    for b in _BOX.finditer(text):
        i = int(b.group(1))
        x1, y1, x2, y2 = (float(b.group(k)) for k in range(3, 7))
        if x2 < x1 or y2 < y1:
            raise ValueError(f"PASCAL annotation {path}: object {i} has (Xmax, Ymax) = ({x2:g}, {y2:g}) before "
                             f"(Xmin, Ymin) = ({x1:g}, {y1:g})")
        if i in objects:
            raise ValueError(f"PASCAL annotation {path}: object {i} has two 'Bounding box' lines")
        objects.append(i)
        labels.append(b.group(2))
        rows.append([x1 - ox, y1 - oy, x2 - ox + 1, y2 - oy + 1])
    count = _COUNT.search(text)
    if count is not None and int(count.group(1)) != len(rows):
        raise ValueError(f"PASCAL annotation {path}: 'Objects with ground truth' says {count.group(1)} but "
                         f"{len(rows)} 'Bounding box' lines were found")
    boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
    return PascalAnnotation(path, image_name, size_hw, tuple(labels), tuple(objects), boxes)


def parse_pascal_folder(ann_dir: Path, name: str) -> list[PascalAnnotation]:
    """Every PASCAL v1.00 ``*.txt`` in ``ann_dir`` (sorted, hidden files skipped); none -> ``ValueError``."""
    files = sorted(p for p in ann_dir.iterdir() if p.suffix.lower() == ".txt" and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{name}: no annotation .txt files in {ann_dir}")
    return [parse_pascal_v1(f) for f in files]


def resolve_image(root: Path, ann: PascalAnnotation, fallback_dir: Path) -> Path:
    """The image an annotation names: tried as a path relative to ``root``, to ``root``'s parent (the archives name
    ``PennFudanPed/PNGImages/x.png`` from outside the folder), then its base name in ``fallback_dir``.
    Raises ``FileNotFoundError`` naming the annotation and the image when none exists."""
    name = ann.image_name.replace("\\", "/")
    tried = [root / name, root.parent / name, fallback_dir / Path(name).name]
    for p in tried:
        if p.is_file():
            return p
    raise FileNotFoundError(f"annotation {ann.file} names image {name!r}, which is missing (looked for "
                            f"{', '.join(str(p) for p in tried)})")


def check_decoded_size(ann: PascalAnnotation, image: Tensor, path: Path) -> None:
    """Raise :class:`~anonlab.types.SampleError` (a per-image problem) when the decoded ``(H, W)`` differs from the
    size the annotation declares."""
    got = (int(image.shape[-2]), int(image.shape[-1]))
    if ann.size_hw is not None and ann.size_hw != got:
        raise SampleError(f"{path} decodes to (H, W) = {got} but {ann.file} declares {ann.size_hw}: "
                             f"its boxes would not fit this image")


@DATASETS.register("pennfudan")
class PennFudanDataset(Dataset):
    """Penn-Fudan pedestrians: real person boxes (and instance masks), no faces.

    root: the ``PennFudanPed`` folder (with ``PNGImages/``, ``Annotation/``, ``PedMasks/``). Every annotation is
    parsed and every image and mask located at construction (a missing one raises naming the annotation); images
    and masks are decoded only in :meth:`load` / :meth:`masks`. Sample ids are the annotation stems
    (``PennPed00001``), sorted. Faces are not annotated: :attr:`pseudo_kinds` is ``("face",)``.
    """

    #: kinds without human annotation here, to be filled with pseudo ground truth by the engine
    pseudo_kinds: tuple[str, ...] = ("face",)

    def __init__(self, root: str) -> None:
        self.root = Path(root).expanduser()
        ann_dir = self.root / "Annotation"
        if not ann_dir.is_dir():
            raise FileNotFoundError(f"pennfudan root {str(root)!r} has no Annotation/ folder (expected the "
                                    f"PennFudanPed folder with PNGImages/, Annotation/, PedMasks/)")
        self._ann = parse_pascal_folder(ann_dir, "pennfudan")
        self._images = [resolve_image(self.root, a, self.root / "PNGImages") for a in self._ann]
        self._masks = []
        for a, img in zip(self._ann, self._images):
            m = self.root / "PedMasks" / f"{img.stem}_mask.png"
            if not m.is_file():
                raise FileNotFoundError(f"annotation {a.file} has no instance mask {m}")
            self._masks.append(m)
        self._ids = [a.file.stem for a in self._ann]


    def refs(self) -> list[str]:
        return list(self._ids)

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self._ids):
            raise IndexError(f"pennfudan index {index} out of range [0, {len(self._ids)})")

    def load(self, index: int) -> Sample:
        """The ``index``-th image as ``uint8 (3, H, W)`` RGB with its person boxes (ids -1, no faces)."""
        self._check(index)
        ann, path = self._ann[index], self._images[index]
        decoded = load_image(path)
        check_decoded_size(ann, decoded.image, path)
        return self.sample(self._ids[index], decoded.image, GroundTruth(persons=ann.boxes.clone()), str(path),
                           decoded.notes(path))

    def masks(self, index: int) -> Tensor:
        """Instance masks of the ``index``-th image: ``bool (N, H, W)``, row ``k`` for box ``k`` of :meth:`load`."""
        from torchvision.io import ImageReadMode, decode_image

        self._check(index)
        path = self._masks[index]
        try:
            ids = decode_image(str(path), mode=ImageReadMode.GRAY)[0]
        except RuntimeError as e:
            raise ImageReadError(f"cannot read mask {path}: {str(e).strip().splitlines()[0]}") from e
        objects = torch.tensor(self._ann[index].objects, dtype=ids.dtype)
        return ids[None] == objects[:, None, None]

    def __repr__(self) -> str:
        return f"PennFudanDataset(root={str(self.root)!r}, n={len(self._ids)})"

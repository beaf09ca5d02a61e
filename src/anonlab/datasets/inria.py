"""The ``inria`` dataset (INRIA Person, Dalal & Triggs, CVPR 2005): annotated positive images, original layout.

Layout of the official ``INRIAPerson.tar``::

    INRIAPerson/<Train|Test>/annotations/<name>.txt   PASCAL Annotation Version 1.00 text
    INRIAPerson/<Train|Test>/pos/<name>.png           the annotated images

Each annotation names its image relative to ``INRIAPerson/`` (``Train/pos/crop_000010.png``) and declares
``# Top left pixel co-ordinates : (0, 0)``; :func:`~anonlab.datasets.pennfudan.parse_pascal_v1` turns its
inclusive pixel boxes into 0-based xyxy edges. The negative images (``neg/``) carry no annotations and are not read.
"""

from __future__ import annotations

from pathlib import Path

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.datasets.pennfudan import (
    check_decoded_size,
    parse_pascal_folder,
    resolve_image,
)
from anonlab.io.images import load_image
from anonlab.types import GroundTruth, Sample

SPLITS = ("Train", "Test")


@DATASETS.register("inria")
class InriaPersonDataset(Dataset):
    """INRIA Person positives: real person boxes, no faces.

    root: the ``INRIAPerson`` folder (then ``split`` picks ``Train/`` or ``Test/``), or one split folder itself
    (holding ``annotations/`` and ``pos/``). Every annotation is parsed and every image located at construction (a
    missing image raises naming the annotation and the image); images are decoded in :meth:`load`. Sample ids are
    ``<split>/<annotation stem>``, sorted. Faces are not annotated: :attr:`pseudo_kinds` is ``("face",)``.
    """

    pseudo_kinds: tuple[str, ...] = ("face",)

    def __init__(self, root: str, split: str = "Test") -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"inria root {str(root)!r} is not an existing directory")
        match = [s for s in SPLITS if s.lower() == str(split).lower()]
        if not match:
            raise ValueError(f"inria: split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.split = match[0]
        split_dir = self.root if _ann_dir(self.root) else self.root / self.split
        ann_dir = _ann_dir(split_dir)
        if ann_dir is None:
            raise FileNotFoundError(f"inria: no annotations/ folder in {split_dir} (expected INRIAPerson/"
                                    f"{self.split}/annotations/*.txt)")
        self._ann = parse_pascal_folder(ann_dir, "inria")
        self._images = [resolve_image(split_dir.parent, a, split_dir / "pos") for a in self._ann]
        self._ids = [f"{split_dir.name}/{a.file.stem}" for a in self._ann]


    def refs(self) -> list[str]:
        return list(self._ids)

    def load(self, index: int) -> Sample:
        """The ``index``-th positive image as ``uint8 (3, H, W)`` RGB with its person boxes (ids -1, no faces)."""
        if not 0 <= index < len(self._ids):
            raise IndexError(f"inria index {index} out of range [0, {len(self._ids)})")
        ann, path = self._ann[index], self._images[index]
        decoded = load_image(path)
        check_decoded_size(ann, decoded.image, path)
        return self.sample(self._ids[index], decoded.image, GroundTruth(persons=ann.boxes.clone()), str(path),
                           decoded.notes(path))

    def __repr__(self) -> str:
        return f"InriaPersonDataset(root={str(self.root)!r}, split={self.split!r}, n={len(self._ids)})"


def _ann_dir(folder: Path) -> Path | None:
    for name in ("annotations", "Annotations"):
        if (folder / name).is_dir():
            return folder / name
    return None

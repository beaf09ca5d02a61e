"""The ``wider_face`` dataset (WIDER FACE, Yang et al., CVPR 2016) from the official ground-truth text file.

``wider_face_split/wider_face_<split>_bbx_gt.txt``, per image: a line with the path relative to
``WIDER_<split>/images/`` (``<event>/<file>.jpg``), a line with the face count N, then N lines
``x1 y1 w h blur expression illumination invalid occlusion pose`` (integers, 0-based pixels). An image with no
face has N = 0 followed by one line of ten zeros. ``invalid = 1`` marks a face too small or ambiguous to judge:
it becomes an *ignore* box (matched detections count neither as TP nor FP), as does every face whose longer side
is below ``min_face`` pixels. Only faces are annotated (no persons, no identities).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.io.images import load_image
from anonlab.types import GroundTruth, Sample


def read_wider_gt(path: Path) -> list[tuple[str, Tensor]]:
    """Parse an official ``wider_face_*_bbx_gt.txt`` -> ``[(relative image path, int64 (N, 10) rows)]`` in file order.

    Raises ``ValueError`` naming the file and line for a malformed entry (bad count, short row, missing rows).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise FileNotFoundError(f"cannot read WIDER FACE ground truth {path}: {e.strerror or e}") from e
    out: list[tuple[str, Tensor]] = []
    i, n_lines = 0, len(lines)
    while i < n_lines:
        name = lines[i].strip()
        i += 1
        if not name:
            continue
        if i >= n_lines or not (lines[i].strip().isascii() and lines[i].strip().isdigit()):
            raise ValueError(f"WIDER FACE ground truth {path}:{i + 1}: expected the face count of {name!r}, got "
                             f"{lines[i].strip()[:40] if i < n_lines else 'end of file'!r}")
        n = int(lines[i])
        i += 1
        rows = []
        for _ in range(n or 1):  # N = 0: one placeholder line
            if i >= n_lines:
                if n == 0:
                    break  # a count of 0 at the very end without its line of zeros
                raise ValueError(f"WIDER FACE ground truth {path}: {name!r} declares {n} faces but the file ends "
                                 f"after {len(rows)}")
            fields = lines[i].split()
            if n == 0:  # the placeholder line of zeros, when present
                if len(fields) == 10 and all(f == "0" for f in fields):
                    i += 1
                break
            try:
                vals = [int(float(f)) for f in fields]
            except (ValueError, OverflowError):  # not a number; inf
                vals = []
            if any(abs(v) >= 1 << 62 for v in vals):  # past int64: not a pixel coordinate
                vals = []
            if len(vals) != 10:
                raise ValueError(f"WIDER FACE ground truth {path}:{i + 1}: face {len(rows) + 1} of {name!r} needs 10 "
                                 f"numbers (x y w h blur expression illumination invalid occlusion pose), got "
                                 f"{lines[i].strip()[:60]!r}")
            rows.append(vals)
            i += 1
        out.append((name, torch.tensor(rows, dtype=torch.int64).reshape(-1, 10)))
    return out


def _find(candidates: list[Path], what: str, root: Path) -> Path:
    for p in candidates:
        if p.exists():
            return p
    raise FileNotFoundError(f"wider_face: no {what} under {root} (looked for {', '.join(str(p) for p in candidates)})")


@DATASETS.register("wider_face")
class WiderFaceDataset(Dataset):
    """WIDER FACE images with their official face boxes.

    root: the folder holding ``WIDER_<split>/images/`` and ``wider_face_split/wider_face_<split>_bbx_gt.txt`` (as the
    official zips extract), or directly ``images/`` and the gt file. split: ``val``, ``train`` (``test`` has no
    boxes). annotations: the gt file, when elsewhere. events: keep images whose event folder (``0--Parade``) contains
    one of these strings (case-insensitive); None keeps all. min_face: faces whose longer side is below this many
    pixels become ignore boxes (``invalid = 1`` faces always are).

    The gt file is parsed and every image it names located at construction (a missing one raises naming both);
    images are decoded in :meth:`load`. Sample ids are the gt file's paths (``0--Parade/0_Parade_marchingband_1_20.jpg``),
    in its order. Persons are not annotated: :attr:`pseudo_kinds` is ``("person",)``.
    """

    pseudo_kinds: tuple[str, ...] = ("person",)

    def __init__(self, root: str, split: str = "val", annotations: str | None = None,
                 events: list[str] | None = None, min_face: int = 0) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"wider_face root {str(root)!r} is not an existing directory")
        if split not in ("train", "val"):
            raise ValueError(f"wider_face: split must be 'train' or 'val' (test has no public boxes), got {split!r}")
        if isinstance(min_face, bool) or not isinstance(min_face, int) or min_face < 0:
            raise ValueError(f"wider_face: min_face must be an integer >= 0 pixels, got {min_face!r}")
        if events is not None and (isinstance(events, str) or not all(isinstance(e, str) and e for e in events)):
            raise ValueError(f"wider_face: events must be a list of non-empty strings or null, got {events!r}")
        self.split, self.min_face = split, min_face
        self.events = None if events is None else list(events)
        gt_name = f"wider_face_{split}_bbx_gt.txt"
        self.annotations = (Path(annotations).expanduser() if annotations is not None else
                            _find([self.root / "wider_face_split" / gt_name, self.root / gt_name], gt_name, self.root))
        self.images_dir = _find([self.root / f"WIDER_{split}" / "images", self.root / "images"], "images folder",
                                self.root)
        entries = read_wider_gt(self.annotations)
        if self.events is not None:
            wanted = [e.lower() for e in self.events]
            all_events = sorted({n.split("/")[0] for n, _ in entries})
            entries = [(n, r) for n, r in entries if any(w in n.split("/")[0].lower() for w in wanted)]
            if not entries:
                raise ValueError(f"wider_face: events {self.events} match no event of {self.annotations}; "
                                 f"valid: {', '.join(all_events)}")
        for name, _ in entries:
            if not (self.images_dir / name).is_file():
                raise FileNotFoundError(f"{self.annotations} names image {name!r}, which is missing from "
                                        f"{self.images_dir}")
        self._names = [n for n, _ in entries]
        self._rows = [r for _, r in entries]


    def refs(self) -> list[str]:
        return list(self._names)

    def ground_truth(self, index: int) -> GroundTruth:
        """The face boxes of the ``index``-th image, without decoding it."""
        r = self._rows[index]
        xy, wh = r[:, 0:2].float(), r[:, 2:4].float()
        ignore = (r[:, 7] == 1) | (wh.max(dim=1).values < self.min_face)
        return GroundTruth(faces=torch.cat([xy, xy + wh], dim=1), ignore_faces=ignore)

    def load(self, index: int) -> Sample:
        """The ``index``-th image as ``uint8 (3, H, W)`` RGB with its faces (ids -1)."""
        if not 0 <= index < len(self._names):
            raise IndexError(f"wider_face index {index} out of range [0, {len(self._names)})")
        path = self.images_dir / self._names[index]
        d = load_image(path)
        return self.sample(self._names[index], d.image, self.ground_truth(index), str(path),
                           d.notes(path))

    def __repr__(self) -> str:
        return (f"WiderFaceDataset(root={str(self.root)!r}, split={self.split!r}, events={self.events}, "
                f"min_face={self.min_face}, n={len(self._names)})")

"""The ``folder`` dataset: every image under a directory, with optional COCO-style face/person annotations.

Also home of :func:`load_coco`, the COCO parser shared with the embedded ``default`` dataset.

COCO conventions read here: ``images`` (``id``, ``file_name`` relative to the dataset root with ``/``
separators, optional ``width``/``height``), ``categories`` (``id``, ``name``; ``face`` and ``person`` are found by
name, case-insensitive; every other category is ignored) and ``annotations`` (``image_id``, ``category_id``,
``bbox`` = ``[x, y, w, h]`` in pixels of the image as decoded by :func:`anonlab.io.images.read_image`, i.e. RGB
with EXIF orientation applied; optional ``iscrowd``/``ignore`` (truthy -> an ignore box) and ``identity``
(int, -1 or absent when unknown)).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.io.images import IMAGE_SUFFIXES, load_image
from anonlab.types import KINDS, GroundTruth, Sample, SampleError


@dataclass(frozen=True)
class CocoImage:
    """One ``images`` entry of a COCO file with its ground truth. ``size_hw`` is ``(H, W)`` or None if absent."""

    file_name: str
    size_hw: tuple[int, int] | None
    gt: GroundTruth


def _fail(path: Path, what: str) -> ValueError:
    return ValueError(f"COCO annotations {path}: {what}")


def _int(path: Path, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"{what} must be an integer, got {value!r}")
    return value


def _category_ids(path: Path, categories: Any) -> dict[int, str]:
    """category id -> "face" | "person" for the categories named so (case-insensitive); others are dropped."""
    if not isinstance(categories, list):
        raise _fail(path, f"'categories' must be a list, got {type(categories).__name__}")
    out: dict[int, str] = {}
    names = []
    for c in categories:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise _fail(path, f"each category needs 'id' and 'name', got {c!r}")
        names.append(str(c["name"]))
        kind = str(c["name"]).strip().lower()
        if kind in KINDS:
            if kind in out.values():
                raise _fail(path, f"two categories are named {kind!r} (case-insensitive)")
            out[_int(path, c["id"], "category id")] = kind
    if not out:
        raise _fail(path, f"no category named 'face' or 'person' (case-insensitive); found {names}")
    return out


def load_coco(path: str | Path) -> dict[str, CocoImage]:
    """Parse a COCO json into ``{file_name: CocoImage}`` (in the file's ``images`` order).

    Faces are the annotations of the category named ``face``, persons those of ``person``; ``iscrowd`` or
    ``ignore`` set -> the box's ignore flag; ``identity`` -> ``face_ids`` / ``person_ids`` (-1 when absent).
    Boxes become ``float32`` xyxy. Raises ``ValueError`` naming the file and the bad entry for malformed
    input (missing keys, unknown ``image_id``, negative, non-finite or non-number boxes (``true``/``false``
    included, though Python counts them as ints), duplicate ids or file names).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise FileNotFoundError(f"cannot read COCO annotations {path}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise _fail(path, f"not valid JSON ({e})") from e
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise _fail(path, "expected a JSON object with 'images', 'annotations' and 'categories'")
    kinds = _category_ids(path, data["categories"])

    if not isinstance(data["images"], list) or not isinstance(data["annotations"], list):
        raise _fail(path, "'images' and 'annotations' must be lists")
    names: dict[int, str] = {}
    seen: set[str] = set()
    sizes: dict[int, tuple[int, int] | None] = {}
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise _fail(path, f"each image needs 'id' and 'file_name', got {im!r}")
        iid, name = _int(path, im["id"], "image id"), str(im["file_name"])
        if iid in names:
            raise _fail(path, f"image id {iid} is used twice ({names[iid]!r}, {name!r})")
        if name in seen:
            raise _fail(path, f"image file_name {name!r} is listed twice")
        names[iid] = name
        seen.add(name)
        sizes[iid] = None
        if im.get("width") is not None and im.get("height") is not None:
            hw = (_int(path, im["height"], f"height of {name!r}"), _int(path, im["width"], f"width of {name!r}"))
            sizes[iid] = hw

    # per image, per kind: rows of (x1, y1, x2, y2), identity, ignore
    rows: dict[int, dict[str, list[tuple[list[float], int, bool]]]] = {i: {k: [] for k in KINDS} for i in names}
    for a in data["annotations"]:
        if not isinstance(a, dict) or not all(k in a for k in ("image_id", "category_id", "bbox")):
            raise _fail(path, f"each annotation needs 'image_id', 'category_id' and 'bbox', got {a!r}")
        kind = kinds.get(_int(path, a["category_id"], "category_id"))
        if kind is None:
            continue  # a category other than face/person
        iid = _int(path, a["image_id"], "image_id")
        if iid not in names:
            raise _fail(path, f"annotation {a.get('id', '?')} names image_id {iid}, which is not in 'images'")
        box = a["bbox"]
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, float) and math.isfinite(v)
                           or isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2 ** 53 for v in box)
                or box[2] < 0 or box[3] < 0):
            raise _fail(path, f"annotation {a.get('id', '?')} of {names[iid]!r}: bbox must be 4 finite numbers "
                              f"[x, y, w, h] with w, h >= 0 (true/false are not numbers), got {box!r}"[:300])
        x, y, w, h = (float(v) for v in box)
        ignore = bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0))
        ident = a.get("identity")
        ident = -1 if ident is None else _int(path, ident, f"identity of annotation {a.get('id', '?')}")
        rows[iid][kind].append(([x, y, x + w, y + h], ident, ignore))

    out: dict[str, CocoImage] = {}
    for iid, name in names.items():
        parts: dict[str, Any] = {}
        for kind in KINDS:
            r = rows[iid][kind]
            parts[f"{kind}s"] = torch.tensor([b for b, _, _ in r], dtype=torch.float32).reshape(-1, 4)
            parts[f"{kind}_ids"] = torch.tensor([i for _, i, _ in r], dtype=torch.int64)
            parts[f"ignore_{kind}s"] = torch.tensor([g for _, _, g in r], dtype=torch.bool)
        out[name] = CocoImage(name, sizes[iid], GroundTruth(**parts, pseudo_gt=False))
    return out


def check_size(coco_file: Path | str, entry: CocoImage, image: torch.Tensor, image_path: Path | str) -> None:
    """Raise :class:`~anonlab.types.SampleError` (a per-image problem: the engine lists the image as failed and
    goes on) when the decoded ``(H, W)`` (EXIF orientation applied) differs from the size the COCO file records.

    A mismatch means the boxes were drawn on another version of the file (or without EXIF rotation).
    """
    got = (int(image.shape[-2]), int(image.shape[-1]))
    if entry.size_hw is not None and entry.size_hw != got:
        raise SampleError(f"{image_path} decodes to (H, W) = {got} but {coco_file} records {entry.size_hw} "
                         f"for {entry.file_name!r}: its boxes would not fit this image")


def list_images(root: Path, recursive: bool = False) -> list[str]:
    """Image files under ``root`` (suffix in ``IMAGE_SUFFIXES``, case-insensitive), as sorted ``/``-separated paths
    relative to ``root``. Hidden files and folders (name starting with ``.``) are skipped; broken links are kept (they
    fail when loaded, one line each)."""
    found = root.rglob("*") if recursive else root.iterdir()
    out = []
    for p in found:
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        # a broken link (dangling, or a loop) is listed too: loading it fails, so it lands in run.json's failures
        # instead of vanishing from the job
        if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or (p.is_symlink() and not p.exists())):
            out.append(rel.as_posix())
    return sorted(out)


@DATASETS.register("folder")
class FolderDataset(Dataset):
    """Every image file under ``root`` (sorted by relative path), optionally with COCO annotations.

    root: a directory of images (``IMAGE_SUFFIXES``); with ``recursive`` its subfolders too.
    annotations: a COCO json (see the module docstring) whose ``file_name`` entries are paths relative to
    ``root``. Without ``recursive``, a ``file_name`` in a subfolder that exists there raises ``ValueError`` naming
    the ``recursive`` option (a configuration error: the file is there but would not be searched). A listed file that is absent, or a found image that is not listed, is a per-image failure
    (:class:`~anonlab.types.SampleError` from ``load``: run.json failures, exit 3); a file that lists none of the
    images found raises ``ValueError`` (a configuration error: wrong file or root). Without it every sample carries ``GroundTruth(pseudo_gt=True)``
    with no boxes, and :attr:`annotated` is False: the engine fills in pseudo ground truth from detectors.

    Sample ids are the relative paths. ``load(i)`` raises :class:`~anonlab.io.images.ImageReadError` for an
    unreadable image and :class:`~anonlab.types.SampleError` for one whose size differs from its COCO entry.
    """

    def __init__(self, root: str, annotations: str | None = None, recursive: bool = False) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"folder dataset root {str(root)!r} is not an existing directory")
        self.recursive = bool(recursive)
        self._files = list_images(self.root, self.recursive)
        if not self._files:
            where = "under" if self.recursive else "directly in"
            hint = "" if self.recursive else " (set dataset.recursive=true to search subfolders)"
            raise ValueError(f"folder dataset: no image files ({', '.join(IMAGE_SUFFIXES)}) {where} {self.root}{hint}")
        self.annotations = None if annotations is None else Path(annotations).expanduser()
        self._coco: dict[str, CocoImage] | None = None
        self._missing: set[str] = set()
        self._unlisted: set[str] = set()
        if self.annotations is not None:
            coco = load_coco(self.annotations)
            present = set(self._files)
            if not self.recursive:
                # file_name entries in subfolders are found only with recursive: say so, rather than calling files
                # that exist missing (a configuration error: every such image would fail)
                nested = [n for n in coco if n not in present and "/" in n and (self.root / n).is_file()]
                if nested:
                    raise ValueError(f"{self.annotations} lists {len(nested)} image(s) in subfolders of {self.root} "
                                     f"(e.g. {nested[0]!r}), which are searched only with recursive: set "
                                     "dataset.recursive=true")
            if not present & set(coco):
                raise ValueError(f"{self.annotations} lists none of the {len(self._files)} image(s) in {self.root} "
                                 f"(it lists e.g. {', '.join(list(coco)[:3])}): wrong annotation file or root?")
            # a disagreement for some images is per image (run.json failures, exit 3), as the brief asks of any
            # per-item problem; only a file that matches nothing stops the job (above)
            self._missing = {n for n in coco if n not in present}
            self._unlisted = {f for f in self._files if f not in coco}
            self._files = self._files + [n for n in coco if n in self._missing]  # listed but absent: last
            self._coco = coco

    @property
    def pseudo_kinds(self) -> tuple[str, ...]:
        """Without an annotation file both kinds get pseudo ground truth from the engine's detector panel."""
        return () if self._coco is not None else ("face", "person")

    def refs(self) -> list[str]:
        return list(self._files)

    def source_files(self) -> list[Path]:
        return [self.root / f for f in self._files] + ([self.annotations] if self.annotations else [])

    def load(self, index: int) -> Sample:
        """The ``index``-th image as ``uint8 (3, H, W)`` RGB with its ground truth."""
        if not 0 <= index < len(self._files):
            raise IndexError(f"folder dataset index {index} out of range [0, {len(self._files)})")
        rel = self._files[index]
        path = self.root / rel
        if rel in self._missing:
            raise SampleError(f"{self.annotations} lists {rel!r} but {path} does not exist")
        if rel in self._unlisted:
            raise SampleError(f"{path} is not listed in {self.annotations}: no ground truth to score it against")
        decoded = load_image(path)
        image, notes = decoded.image, decoded.notes(path)
        if self._coco is None:
            return self.sample(rel, image, GroundTruth(pseudo_gt=True), str(path), notes)
        entry = self._coco[rel]
        check_size(self.annotations, entry, image, path)  # type: ignore[arg-type]
        return self.sample(rel, image, entry.gt, str(path), notes)

    def __repr__(self) -> str:
        ann = f", annotations={str(self.annotations)!r}" if self.annotations else ""
        return f"FolderDataset(root={str(self.root)!r}{ann}, recursive={self.recursive}, n={len(self._files)})"

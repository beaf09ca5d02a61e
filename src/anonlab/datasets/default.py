"""The embedded ``default`` dataset: photos of people that installed dependencies ship, with hand-checked boxes.

No image is stored in this repository and nothing is downloaded. ``datasets/default/manifest.json`` names each
photo by (importable package, path inside it, sha256 of the file bytes, source, licence); the file is found with
``importlib.util.find_spec(package)`` (which does not import the package) and its bytes are checked against the
sha256. ``datasets/default/annotations.json`` holds the COCO-style face/person boxes, parsed by the same
:func:`~anonlab.datasets.folder.load_coco` as the ``folder`` dataset. How the boxes were made and checked:
``datasets/README.md``.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.datasets.folder import CocoImage, check_size, load_coco
from anonlab.io.images import load_image
from anonlab.types import Sample
from anonlab.weights import sha256_file

#: manifest.json + annotations.json, inside the package (a link to <repo>/datasets/default)
DATA_DIR = Path(__file__).resolve().parent / "default_data"


@dataclass(frozen=True)
class ManifestEntry:
    """One photo of the default dataset: ``path`` inside the installed ``package``, pinned by ``sha256``."""

    file_name: str
    package: str
    path: str
    sha256: str
    source: str = ""
    licence: str = ""


def read_manifest(path: Path) -> list[ManifestEntry]:
    """Parse ``manifest.json`` (``{"version": 1, "images": [{file_name, package, path, sha256, ...}]}``)."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise FileNotFoundError(f"cannot read dataset manifest {path}: {e.strerror or e}") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"dataset manifest {path} is not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not data["images"]:
        raise ValueError(f"dataset manifest {path}: expected an object with a non-empty 'images' list")
    out = []
    for e in data["images"]:
        keys = ("file_name", "package", "path", "sha256")
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in keys):
            raise ValueError(f"dataset manifest {path}: each image needs string {', '.join(keys)}; got {e!r}")
        out.append(ManifestEntry(e["file_name"], e["package"], e["path"], e["sha256"].lower(),
                                 str(e.get("source", "")), str(e.get("licence", ""))))
    names = [e.file_name for e in out]
    if len(set(names)) != len(names):
        raise ValueError(f"dataset manifest {path}: duplicate file_name in {names}")
    return out


def package_path(entry: ManifestEntry) -> Path:
    """Locate ``entry.path`` inside the installed ``entry.package`` without importing the package."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None:
        raise FileNotFoundError(f"default dataset image {entry.file_name!r} (expected sha256 {entry.sha256}) comes "
                                f"from package {entry.package!r}, which is not installed")
    locations = list(spec.submodule_search_locations or [])
    base = Path(locations[0]) if locations else Path(spec.origin or "").parent
    p = base / entry.path
    if not p.is_file():
        raise FileNotFoundError(f"default dataset image {entry.file_name!r}: {p} does not exist in the installed "
                                f"{entry.package!r} (expected sha256 {entry.sha256})")
    return p


def verify(entry: ManifestEntry, path: Path) -> None:
    """Raise ``ValueError`` unless the sha256 of the bytes at ``path`` is ``entry.sha256``."""
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ValueError(f"default dataset image {entry.file_name!r} at {path}: sha256 {actual} != expected "
                         f"{entry.sha256} (another version of {entry.package!r}? the boxes fit only the pinned file)")


@DATASETS.register("default")
class DefaultDataset(Dataset):
    """Photos shipped by installed dependencies (ultralytics, matplotlib, scikit-image) with checked face and
    person boxes; works on a fresh clone, offline.

    data_dir: folder holding ``manifest.json`` and ``annotations.json``; None -> the embedded one
    (``datasets/default``). Every file is located and its sha256 verified here, at construction: a missing
    package or a changed file raises naming the file and the expected (and actual) hash.
    Sample ids are the manifest's ``file_name``s, in manifest order; ``gt.pseudo_gt`` is False.
    """

    def __init__(self, data_dir: str | None = None) -> None:
        self.data_dir = DATA_DIR if data_dir is None else Path(data_dir).expanduser()
        self.manifest = read_manifest(self.data_dir / "manifest.json")
        self._ann_file = self.data_dir / "annotations.json"
        coco = load_coco(self._ann_file)
        listed = [e.file_name for e in self.manifest]
        if set(coco) != set(listed):
            raise ValueError(f"{self._ann_file} lists images {sorted(coco)} but {self.data_dir / 'manifest.json'} "
                             f"lists {sorted(listed)}: they must agree")
        self._coco: dict[str, CocoImage] = coco
        self._paths: list[Path] = []
        for entry in self.manifest:
            p = package_path(entry)
            verify(entry, p)
            self._paths.append(p)


    def refs(self) -> list[str]:
        return [e.file_name for e in self.manifest]

    def load(self, index: int) -> Sample:
        """The ``index``-th photo as ``uint8 (3, H, W)`` RGB (EXIF applied) with its ground truth."""
        if not 0 <= index < len(self.manifest):
            raise IndexError(f"default dataset index {index} out of range [0, {len(self.manifest)})")
        entry, path = self.manifest[index], self._paths[index]
        decoded = load_image(path)
        ann = self._coco[entry.file_name]
        check_size(self._ann_file, ann, decoded.image, path)
        return self.sample(entry.file_name, decoded.image, ann.gt, str(path), decoded.notes(path))

    def __repr__(self) -> str:
        return f"DefaultDataset(data_dir={str(self.data_dir)!r}, n={len(self.manifest)})"

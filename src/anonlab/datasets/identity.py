"""Identity datasets: face images labelled with who is in them, with optional declared verification pairs.

Why these live in the ``dataset`` registry (:data:`~anonlab.datasets.DATASETS`) and not in a sibling registry: an
identity set *is* a stream of :class:`~anonlab.types.Sample`s, and ``GroundTruth`` already carries ``face_ids``. So
the detection engine runs on it unchanged (face recall per defense setting, pseudo ground truth where the faces are
not boxed), and the identity evaluation (:mod:`anonlab.identity`) adds what only it needs through
:class:`IdentityDataset`: ``identities`` (names), :meth:`IdentityDataset.identity` (the person in image ``i``, known
without decoding) and :meth:`IdentityDataset.pairs` (a declared verification protocol, or None).

Face boxes ("face_source"):
- ``image``: the face *is* the image (``att_faces``: the AT&T crops, 92 x 112 px, the face nearly fills the frame;
  the box is the whole image, ``face_ids`` = the person, ``pseudo_gt`` False);
- ``detector``: photos whose faces nobody boxed (deepface, facenet-pytorch, ``identity_folder``, LFW). Samples
  carry no face box (``pseudo_kinds = ("face",)``); the identity evaluation finds the person's face on the *clean*
  image with its ``locator`` detector (the largest face; rows are flagged ``pseudo_boxes``), and the detection
  engine builds pseudo ground truth with its panel, as for any unannotated set.

Pairs: :class:`Pair` ``(i, j, same)`` indexes :meth:`refs`. A pair file that names an image which is not there is
refused when the dataset is built, in one line naming the file, the line number and the missing image (a bad
input stops the job before any work: exit 2).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.io.images import IMAGE_SUFFIXES, load_image
from anonlab.types import GroundTruth, Sample

FACE_SOURCES = ("image", "detector")


@dataclass(frozen=True)
class Pair:
    """A declared verification pair: images ``i`` and ``j`` (indices of ``refs()``); ``same`` True when they show
    the same person. In an attack, ``i`` is the enrolled (gallery) side and ``j`` the probe."""

    i: int
    j: int
    same: bool


class IdentityDataset(Dataset):
    """Base of identity sets: images ``files`` (absolute paths, a stable order), each showing the person
    ``labels[k]`` (an index into ``identities``). Subclasses fill ``root``, ``files``, ``labels``, ``identities``
    and optionally ``_pairs`` in ``__init__`` and set ``face_source`` (see the module docstring)."""

    face_source: str = "detector"

    def __init__(self) -> None:
        self.root: Path = Path()
        self.files: list[Path] = []
        self.labels: list[int] = []
        self.identities: list[str] = []
        self._pairs: list[Pair] | None = None

    @property
    def pseudo_kinds(self) -> tuple[str, ...]:  # type: ignore[override]
        """Faces of ``detector`` sets are not boxed: the engine's panel pseudo-labels them; persons never are."""
        return ("face", "person") if self.face_source == "detector" else ("person",)

    def refs(self) -> list[str]:
        return [self._ref(p) for p in self.files]

    def _ref(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix() if p.is_relative_to(self.root) else str(p)

    def identity(self, index: int) -> int:
        """The person shown in image ``index``: an index into :attr:`identities` (no decoding)."""
        return self.labels[index]

    def pairs(self) -> list[Pair] | None:
        """The declared verification pairs, or None when the set declares none (then every pair of images is a
        pair: the evaluation builds them)."""
        return None if self._pairs is None else list(self._pairs)

    def load(self, index: int) -> Sample:
        """Image ``index`` as ``uint8 (3, H, W)`` RGB. ``face_source == "image"``: one face box, the whole frame,
        with ``face_ids = [identity]``; ``"detector"``: no face box (``pseudo_gt``)."""
        if not 0 <= index < len(self.files):
            raise IndexError(f"{self.name} index {index} out of range [0, {len(self.files)})")
        path = self.files[index]
        decoded = load_image(path)
        image = decoded.image
        if self.face_source == "image":
            h, w = image.shape[-2:]
            gt = GroundTruth(faces=torch.tensor([[0.0, 0.0, float(w), float(h)]]),
                             face_ids=torch.tensor([self.labels[index]], dtype=torch.int64))
        else:
            gt = GroundTruth(pseudo_gt=True)
        return self.sample(self._ref(path), image, gt, str(path), decoded.notes(path))


def _check_root(root: str | Path, what: str) -> Path:
    p = Path(root).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(f"{what} root {str(root)!r} is not an existing directory")
    return p


def _check_face_source(face_source: str, what: str) -> str:
    if face_source not in FACE_SOURCES:
        raise ValueError(f"{what}: face_source must be one of {', '.join(FACE_SOURCES)}, got {face_source!r}")
    return face_source


@DATASETS.register("att_faces")
class AttFaces(IdentityDataset):
    """The AT&T (ORL) Database of Faces: ``root/sN/M.pgm``, 40 people x 10 grey 92 x 112 crops (F. Samaria and
    A. Harter 1994; ``$SHARED/datasets/att_orl_faces``). Identity = the folder ``sN`` (sorted by N). No declared
    pairs: every pair of the 400 images is one (79,800), and closed-set identification uses every image.

    ``face_source``: ``image`` (default: the crop is the face, box = whole frame, as McPherson et al. 2016 use it)
    or ``detector`` (the identity evaluation's locator finds the face inside the crop). ``subjects`` /
    ``images_per_subject``: only the first N subjects (s1, s2, ...) / images (1.pgm, 2.pgm, ...) of each, for
    quick jobs; None = all."""

    def __init__(self, root: str, face_source: str = "image", subjects: int | None = None,
                 images_per_subject: int | None = None) -> None:
        super().__init__()
        self.root = _check_root(root, "att_faces")
        self.face_source = _check_face_source(face_source, "att_faces")
        people = sorted((d for d in self.root.iterdir() if d.is_dir() and d.name[:1] == "s" and d.name[1:].isdigit()),
                        key=lambda d: int(d.name[1:]))
        if not people:
            raise ValueError(f"att_faces: no subject folders sN/ in {self.root} (expected s1 ... s40 of M.pgm)")
        for key, v in (("subjects", subjects), ("images_per_subject", images_per_subject)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"att_faces: {key} must be an integer >= 1 or null, got {v!r}")
        people = people[:subjects]
        for k, d in enumerate(people):
            imgs = sorted((f for f in d.iterdir() if f.suffix.lower() == ".pgm"),
                          key=lambda f: (int(f.stem) if f.stem.isdigit() else 1 << 30, f.name))
            if not imgs:
                raise ValueError(f"att_faces: subject folder {d} has no .pgm images")
            imgs = imgs[:images_per_subject]
            self.identities.append(d.name)
            self.files += imgs
            self.labels += [k] * len(imgs)


def read_pair_csv(path: Path, images: Path, columns: tuple[str, str, str] = ("file_x", "file_y", "decision"),
                  yes: str = "yes") -> list[tuple[str, str, bool]]:
    """Rows ``(file_x, file_y, same)`` of a pair CSV with a header (column names matched case-insensitively;
    ``same`` is ``decision == yes``, case-insensitive). File names are reduced to their basename and must exist in
    ``images``. Raises ``ValueError`` naming the file and line (1-based, the header is line 1) for a missing
    column, a short row or an image that is not in ``images``."""
    try:
        text = path.read_text()
    except OSError as e:
        raise FileNotFoundError(f"cannot read pair list {path}: {e.strerror or e}") from e
    reader = csv.reader(text.splitlines())
    header = [h.strip().lower() for h in next(reader, [])]
    try:
        cols = [header.index(c) for c in columns]
    except ValueError:
        raise ValueError(f"pair list {path}: line 1 must name the columns {', '.join(columns)}, got {header}") from None
    out = []
    for line_no, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) <= max(cols):
            raise ValueError(f"pair list {path}: line {line_no} has {len(row)} fields, expected at least {max(cols) + 1}")
        a, b = (Path(row[cols[0]].strip()).name, Path(row[cols[1]].strip()).name)
        for f in (a, b):
            if not (images / f).is_file():
                raise ValueError(f"pair list {path}: line {line_no} names {f}, which is not in {images}")
        out.append((a, b, row[cols[2]].strip().lower() == yes))
    if not out:
        raise ValueError(f"pair list {path}: no pairs after the header")
    return out


def _components(names: list[str], same: list[tuple[str, str]]) -> dict[str, int]:
    """Identity labels from same-person pairs: connected components (union-find), numbered in ``names`` order."""
    parent = {n: n for n in names}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in same:
        parent[find(a)] = find(b)
    roots: dict[str, int] = {}
    return {n: roots.setdefault(find(n), len(roots)) for n in names}


@DATASETS.register("deepface_pairs")
class DeepfacePairs(IdentityDataset):
    """The deepface unit-test faces with a declared pair list (``$SHARED/datasets/deepface_unit_faces``; README
    there): ``master.csv`` (300 pairs, 38 same, 25 images of 9 people; deepface's own tests use it) or
    ``face-recognition-pivot.csv`` (280 pairs, 61 images of 13 people). Images are those the list names, in order of
    first mention; identities are the connected components of its same-person pairs (the people are not named).
    Faces are found by the identity evaluation's locator on the clean photo (``face_source = detector``)."""

    def __init__(self, root: str, pairs: str = "master.csv") -> None:
        super().__init__()
        self.root = _check_root(root, "deepface_pairs")
        images = self.root / "images"
        if not images.is_dir():
            raise FileNotFoundError(f"deepface_pairs: {images} is not a directory (expected images/ beside the CSVs)")
        rows = read_pair_csv(self.root / pairs, images)
        names: list[str] = []
        for a, b, _ in rows:
            for f in (a, b):
                if f not in names:
                    names.append(f)
        label = _components(names, [(a, b) for a, b, s in rows if s])
        index = {n: k for k, n in enumerate(names)}
        self.files = [images / n for n in names]
        self.labels = [label[n] for n in names]
        self.identities = [f"person{k}" for k in range(max(self.labels) + 1)]
        self._pairs = [Pair(index[a], index[b], s) for a, b, s in rows]
        bad = [(a, b) for a, b, s in rows if not s and label[a] == label[b]]
        if bad:
            raise ValueError(f"deepface_pairs: {self.root / pairs} marks {bad[0][0]},{bad[0][1]} different, but its "
                             f"same-person pairs link them ({len(bad)} such pair(s))")


@DATASETS.register("identity_folder")
class IdentityFolder(IdentityDataset):
    """A ``root/<identity>/<image>`` layout (one folder per person, images of :data:`IMAGE_SUFFIXES` directly in
    it; sorted), optionally with a pair list ``pairs`` (a CSV ``file_x,file_y,decision`` of paths relative to
    ``root``, decision ``yes``/``no``). Faces are found by the locator (``face_source = detector``), or the image is
    the face (``face_source = image``, for pre-cropped sets)."""

    def __init__(self, root: str, pairs: str | None = None, face_source: str = "detector") -> None:
        super().__init__()
        self.root = _check_root(root, "identity_folder")
        self.face_source = _check_face_source(face_source, "identity_folder")
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            imgs = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if imgs:
                self.labels += [len(self.identities)] * len(imgs)
                self.identities.append(d.name)
                self.files += imgs
        if not self.files:
            raise ValueError(f"identity_folder: no <identity>/<image> files ({', '.join(IMAGE_SUFFIXES)}) under {self.root}")
        if pairs is not None:
            self._pairs = self._read_pairs(Path(pairs).expanduser())

    def _read_pairs(self, path: Path) -> list[Pair]:
        index = {self._ref(p): k for k, p in enumerate(self.files)}
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise FileNotFoundError(f"cannot read pair list {path}: {e.strerror or e}") from e
        out = []
        for line_no, row in enumerate(csv.reader(lines[1:]), start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise ValueError(f"pair list {path}: line {line_no} has {len(row)} fields, expected file_x,file_y,decision")
            a, b = row[0].strip(), row[1].strip()
            for f in (a, b):
                if f not in index:
                    raise ValueError(f"pair list {path}: line {line_no} names {f}, which is not an image under {self.root}")
            out.append(Pair(index[a], index[b], row[2].strip().lower() in ("yes", "1", "true", "same")))
        return out


@DATASETS.register("facenet_test_images")
class FacenetTestImages(IdentityFolder):
    """facenet-pytorch's test images (``$SHARED/datasets/facenet_pytorch_test_images``): ``test_images/<name>/1.jpg``
    portraits and ``test_images_aligned/<name>/1.png`` 160 x 160 MTCNN crops of the same people. Both folders
    together: each person's portrait and crop are a same-person pair (bradley_cooper has only the crop: the stored
    snapshot lacks his 4 MiB portrait). No declared pairs: every pair of images is one."""

    def __init__(self, root: str) -> None:
        IdentityDataset.__init__(self)
        self.root = _check_root(root, "facenet_test_images")
        people: dict[str, list[Path]] = {}
        for sub in ("test_images", "test_images_aligned"):
            base = self.root / sub
            if not base.is_dir():
                raise FileNotFoundError(f"facenet_test_images: {base} is not a directory")
            for d in sorted(p for p in base.iterdir() if p.is_dir()):
                people.setdefault(d.name, []).extend(
                    sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES))
        for name in sorted(people):
            self.labels += [len(self.identities)] * len(people[name])
            self.identities.append(name)
            self.files += people[name]


@DATASETS.register("lfw")
class LfwPairs(IdentityDataset):
    """Labeled Faces in the Wild, View 2 pairs protocol (Huang et al. 2007): ``root/lfw/<name>/<name>_NNNN.jpg``
    and ``root/pairs.txt`` (``anonlab datasets fetch lfw --sha256 ...`` downloads both; never fetched in tests).
    ``pairs.txt``: a header ``folds n`` then per fold ``n`` same lines ``name i j`` and ``n`` different lines
    ``name1 i name2 j`` (1-based image numbers). Only the images the pairs name are loaded (in order of first
    mention). Faces are found by the locator (250 x 250 photos centred on the face)."""

    def __init__(self, root: str, pairs: str = "pairs.txt", images: str = "lfw") -> None:
        super().__init__()
        self.root = _check_root(root, "lfw")
        base = self.root / images
        path = self.root / pairs
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise FileNotFoundError(f"cannot read pair list {path}: {e.strerror or e}") from e
        index: dict[Path, int] = {}
        people: dict[str, int] = {}
        pairs_out: list[Pair] = []

        def image(name: str, num: str, line_no: int) -> int:
            if not num.isdigit():
                raise ValueError(f"pair list {path}: line {line_no}: image number {num!r} is not a positive integer")
            f = base / name / f"{name}_{int(num):04d}.jpg"
            if not f.is_file():
                raise ValueError(f"pair list {path}: line {line_no} names {f.relative_to(self.root)}, which is missing")
            if f not in index:
                index[f] = len(self.files)
                self.files.append(f)
                self.labels.append(people.setdefault(name, len(people)))
            return index[f]

        for line_no, line in enumerate(lines[1:], start=2):
            f = line.split()
            if len(f) == 3:
                pairs_out.append(Pair(image(f[0], f[1], line_no), image(f[0], f[2], line_no), True))
            elif len(f) == 4:
                pairs_out.append(Pair(image(f[0], f[1], line_no), image(f[2], f[3], line_no), False))
            elif f:
                raise ValueError(f"pair list {path}: line {line_no} has {len(f)} fields, expected 3 (name i j) or 4 "
                                 f"(name1 i name2 j)")
        if not pairs_out:
            raise ValueError(f"pair list {path}: no pairs after the header")
        self.identities = list(people)
        self._pairs = pairs_out

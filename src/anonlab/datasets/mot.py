"""The ``mot`` dataset: MOTChallenge sequences (``seqinfo.ini``, ``gt/gt.txt``, ``img1/`` stills and/or a video).

``gt/gt.txt`` is the MOTChallenge CSV, one box per line, frames 1-based, boxes in pixels of the
``imWidth x imHeight`` frame that ``seqinfo.ini`` declares (``bb_left, bb_top`` is the top-left corner):

- 2D MOT 2015 (10 columns): ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, x, y, z`` (world coordinates
  after ``conf``): rows with ``conf != 0`` are pedestrians; ``conf == 0`` rows are dropped, as the official
  evaluation (TrackEval) drops zero-marked ground truth.
- MOT16/17/20 (9 columns): ``frame, id, bb_left, bb_top, bb_width, bb_height, conf, class, visibility``: class 1
  (pedestrian) with ``conf != 0`` is a person box; classes 2 (person on vehicle), 7 (static person), 8 (distractor)
  and 12 (reflection) become *ignore* person boxes (TrackEval removes detections matched to them, so they count
  neither as TP nor FP); every other class (vehicles, occluders, ...) and ``conf == 0`` pedestrians are dropped.

Track ids become ``person_ids``. Boxes are clipped to the frame (a box wholly outside it is dropped). A frame comes from ``img1/<frame:06d><imExt>`` when
that still exists (``source="auto"``) and is otherwise decoded from the sequence's video (frame ``k`` of the video
is MOT frame ``k + 1``); boxes are rescaled by ``(W, H)`` decoded / ``(imWidth, imHeight)`` of ``seqinfo.ini`` per
frame, so a 480x360 re-encode of a 768x576 sequence gets its boxes scaled by 0.625.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.datasets.video import check_stride
from anonlab.io.images import load_image
from anonlab.io.video import VIDEO_SUFFIXES, VideoReader
from anonlab.types import GroundTruth, Sample

PEDESTRIAN = 1
#: MOT16/17/20 classes whose boxes are ignore regions (TrackEval's distractor classes)
DISTRACTORS = (2, 7, 8, 12)
SOURCES = ("auto", "images", "video")


@dataclass(frozen=True)
class SeqInfo:
    name: str
    im_dir: str
    im_ext: str
    size_hw: tuple[int, int]
    length: int | None


def read_seqinfo(path: Path) -> SeqInfo:
    """Parse ``seqinfo.ini`` (section ``[Sequence]``: ``name``, ``imDir``, ``imExt``, ``imWidth``, ``imHeight``,
    ``seqLength``). Raises ``ValueError`` naming the file and the missing key."""
    cp = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as f:
            cp.read_file(f)
    except (OSError, configparser.Error, UnicodeDecodeError) as e:
        msg = " ".join(str(e).split())  # configparser's messages span lines
        raise ValueError(f"cannot read MOT seqinfo {path}: {msg}") from e
    if not cp.has_section("Sequence"):
        raise ValueError(f"MOT seqinfo {path}: no [Sequence] section")
    sec = cp["Sequence"]
    try:
        hw = (int(sec["imHeight"]), int(sec["imWidth"]))
    except (KeyError, ValueError) as e:
        raise ValueError(f"MOT seqinfo {path}: imWidth and imHeight must be integers ({e})") from e
    if min(hw) < 1:
        raise ValueError(f"MOT seqinfo {path}: imWidth and imHeight must be >= 1, got {hw[1]}x{hw[0]}")
    length = sec.get("seqLength")
    try:
        n = int(length) if length else None
    except ValueError as e:
        raise ValueError(f"MOT seqinfo {path}: seqLength must be an integer, got {length!r}") from e
    if n is not None and n < 0:
        raise ValueError(f"MOT seqinfo {path}: seqLength must be >= 0, got {n}")
    return SeqInfo(sec.get("name", path.parent.name), sec.get("imDir", "img1"), sec.get("imExt", ".jpg"), hw, n)


def read_mot_gt(path: Path) -> dict[int, tuple[Tensor, Tensor, Tensor]]:
    """``gt.txt`` -> ``{frame: (boxes float32 (N, 4) xyxy, ids int64 (N,), ignore bool (N,))}`` in the sequence's
    pixel frame, filtered as the module docstring says. Raises ``ValueError`` naming the file for a malformed row."""
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except OSError as e:
        raise FileNotFoundError(f"cannot read MOT ground truth {path}: {e}") from e
    except ValueError as e:
        raise ValueError(f"MOT ground truth {path}: not a numeric CSV ({' '.join(str(e).split())})") from e
    if rows.size == 0:
        return {}
    if not np.isfinite(rows).all() or (np.abs(rows[:, :2]) >= 2 ** 62).any():
        raise ValueError(f"MOT ground truth {path}: every value must be finite, frame and id within int64")
    ncol = rows.shape[1]
    if ncol not in (7, 9, 10):
        raise ValueError(f"MOT ground truth {path}: expected 9 (MOT16/17/20) or 10 (MOT15) columns, got {ncol}")
    conf = rows[:, 6] != 0
    if ncol == 9:
        cls = rows[:, 7].astype(np.int64)
        person = conf & (cls == PEDESTRIAN)
        ignore = np.isin(cls, DISTRACTORS)
    else:  # MOT15: no class column
        person, ignore = conf, np.zeros(len(rows), dtype=bool)
    keep = person | ignore
    rows, ignore = rows[keep], ignore[keep]
    if (rows[:, 4:6] < 0).any():
        raise ValueError(f"MOT ground truth {path}: a box has negative width or height")
    frames = rows[:, 0].astype(np.int64)
    xyxy = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], axis=1).astype(np.float32)
    order = np.argsort(frames, kind="stable")
    frames, xyxy, ids, ignore = frames[order], xyxy[order], rows[order, 1].astype(np.int64), ignore[order]
    uniq, start = np.unique(frames, return_index=True)
    end = np.append(start[1:], len(frames))
    return {int(f): (torch.from_numpy(xyxy[a:b].copy()), torch.from_numpy(ids[a:b].copy()),
                     torch.from_numpy(ignore[a:b].copy())) for f, a, b in zip(uniq, start, end)}


class _Sequence:
    def __init__(self, folder: Path, source: str, video: str | None) -> None:
        self.folder = folder
        self.info = read_seqinfo(folder / "seqinfo.ini")
        gt = folder / "gt" / "gt.txt"
        if not gt.is_file():
            raise FileNotFoundError(f"MOT sequence {folder} has no gt/gt.txt")
        self.gt = read_mot_gt(gt)
        self.gt_file = gt
        self.video_path: Path | None = None
        if video is not None:
            self.video_path = Path(video).expanduser()
            if not self.video_path.is_absolute():
                self.video_path = folder / self.video_path
        elif source != "images":
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
            if len(found) > 1:
                raise ValueError(f"MOT sequence {folder} holds {len(found)} videos ({', '.join(p.name for p in found)}):"
                                 f" name one with video=")
            self.video_path = found[0] if found else None
        if source == "images":
            self.video_path = None
        self.reader = VideoReader(self.video_path) if self.video_path is not None else None
        length = self.info.length or (max(self.gt) if self.gt else 0)
        if self.reader is not None and self.info.length is None:
            length = max(length, len(self.reader))
        self.length = length

    def still(self, frame: int) -> Path:
        return self.folder / self.info.im_dir / f"{frame:06d}{self.info.im_ext}"


@DATASETS.register("mot")
class MOTDataset(Dataset):
    """MOTChallenge sequences: person boxes with track ids (see the module docstring for the formats and filters).

    root: a sequence folder (holding ``seqinfo.ini``) or a folder of sequence folders (sorted by name).
    stride: keep MOT frames 1, 1 + stride, 1 + 2*stride, ... of each sequence; max_frames: at most this many per
    sequence. source: ``auto`` (the ``img1`` still when present, else the video frame), ``images`` (stills only;
    a missing still raises at construction) or ``video`` (every frame from the video). video: the video file
    (relative to the sequence folder or absolute); None finds the one video file in the sequence folder.
    Sample ids are ``<seqinfo name>/<MOT frame:06d>``. Faces are not annotated: :attr:`pseudo_kinds` is
    ``("face",)``.
    """

    pseudo_kinds: tuple[str, ...] = ("face",)
    sequential = True  # frames may come from one VideoReader per sequence: decode in order, from one thread

    def __init__(self, root: str, stride: int = 1, max_frames: int | None = None, source: str = "auto",
                 video: str | None = None) -> None:
        self.root = Path(root).expanduser()
        self.stride, self.max_frames = check_stride(stride, max_frames, "mot dataset")
        if source not in SOURCES:
            raise ValueError(f"mot dataset: source must be one of {', '.join(SOURCES)}, got {source!r}")
        self.source = source
        if (self.root / "seqinfo.ini").is_file():
            folders = [self.root]
        elif self.root.is_dir():
            folders = sorted(p for p in self.root.iterdir() if (p / "seqinfo.ini").is_file())
            if not folders:
                raise ValueError(f"mot dataset root {self.root} holds no seqinfo.ini, nor sequence folders with one")
        else:
            raise FileNotFoundError(f"mot dataset root {str(root)!r} is not an existing directory")
        if video is not None and len(folders) > 1:
            raise ValueError(f"mot dataset: video= names one file but {self.root} holds {len(folders)} sequences")
        self._seqs = [_Sequence(f, source, video) for f in folders]
        # per sample: (sequence index, MOT frame, still path or None)
        self._items: list[tuple[int, int, Path | None]] = []
        for si, seq in enumerate(self._seqs):
            for frame in list(range(1, seq.length + 1, self.stride))[: self.max_frames]:
                still = seq.still(frame)
                use_still = source != "video" and still.is_file()
                if not use_still:
                    if source == "images":
                        raise FileNotFoundError(f"MOT sequence {seq.folder}: frame {frame} has no still {still} "
                                                f"(source=images)")
                    if seq.reader is None:
                        raise FileNotFoundError(f"MOT sequence {seq.folder}: frame {frame} has no still {still} "
                                                f"and the sequence has no video file to decode it from")
                    if frame > len(seq.reader):
                        raise ValueError(f"MOT sequence {seq.folder}: frame {frame} has no still and "
                                         f"{seq.video_path} has only {len(seq.reader)} frames")
                self._items.append((si, frame, still if use_still else None))
        self._ids = [f"{self._seqs[si].info.name}/{frame:06d}" for si, frame, _ in self._items]


    def refs(self) -> list[str]:
        return list(self._ids)

    def load(self, index: int) -> Sample:
        """The ``index``-th frame as ``uint8 (3, H, W)`` RGB, person boxes in its pixels (rescaled, clipped)."""
        if not 0 <= index < len(self._items):
            raise IndexError(f"mot dataset index {index} out of range [0, {len(self._items)})")
        si, frame, still = self._items[index]
        seq = self._seqs[si]
        if still is not None:
            d = load_image(still)
            image, path, notes = d.image, str(still), d.notes(still)
        else:
            image, path = seq.reader.read(frame - 1), f"{seq.video_path}#{frame - 1}"  # type: ignore[union-attr]
            notes = {str(seq.video_path): seq.reader.notes} if seq.reader.notes else {}  # type: ignore[union-attr]
        h, w = image.shape[-2:]
        empty = (torch.empty(0, 4), torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.bool))
        boxes, ids, ignore = seq.gt.get(frame, empty)
        sh, sw = seq.info.size_hw
        scale = torch.tensor([w / sw, h / sh, w / sw, h / sh], dtype=torch.float32)
        gt = GroundTruth(persons=boxes * scale, person_ids=ids, ignore_persons=ignore)
        return self.sample(self._ids[index], image, gt, path, notes)  # clipped to the frame, empty boxes dropped

    def __repr__(self) -> str:
        return (f"MOTDataset(root={str(self.root)!r}, sequences={len(self._seqs)}, stride={self.stride}, "
                f"max_frames={self.max_frames}, source={self.source!r}, n={len(self._items)})")

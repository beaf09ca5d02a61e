"""The ``footage`` dataset: a user's own footage (image files, folders of images and videos, video files) as one
bounded, evenly spaced, seeded sample of frames, without annotations (``anonlab recommend`` reads it).

Every frame of the inputs is one slot in a list: an image is one slot, a video one slot per frame (its header's frame
count, :class:`~anonlab.io.video.VideoReader`), inputs in the order given, folders walked recursively in sorted
order. When there are more slots than ``max_frames``, the sample is every ``step = slots / max_frames``-th slot
starting at a seeded offset in ``[0, step)``: evenly spaced over all the footage, the same for a seed.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.io.images import IMAGE_SUFFIXES, load_image
from anonlab.io.video import VIDEO_SUFFIXES, VideoReader
from anonlab.types import KINDS, GroundTruth, Sample


def footage_files(paths: list[str | Path]) -> list[Path]:
    """The image and video files of ``paths`` (files as given, folders walked recursively, sorted; hidden names
    skipped). Raises ``FileNotFoundError`` for a path that does not exist, ``ValueError`` for a file that is not an
    image or video (by suffix) or when nothing is found."""
    media = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    files: list[Path] = []
    for item in paths:
        p = Path(item).expanduser()
        if p.is_dir():
            files.extend(f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in media
                         and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            if p.suffix.lower() not in media:
                raise ValueError(f"footage {p} is not an image or video ({', '.join(media)})")
            files.append(p)
        else:
            raise FileNotFoundError(f"footage {p} does not exist")
    if not files:
        raise ValueError(f"no image or video files ({', '.join(media)}) in {', '.join(map(str, paths)) or 'no input'}")
    return files


def even_sample(n: int, k: int, seed: int) -> list[int]:
    """``min(n, k)`` indices of ``range(n)``, evenly spaced (step ``n / k``) from a seeded offset in ``[0, step)``."""
    if n <= k:
        return list(range(n))
    step = n / k
    offset = random.Random(seed).random() * step
    return [min(n - 1, math.floor(offset + i * step)) for i in range(k)]


@DATASETS.register("footage")
class FootageDataset(Dataset):
    """A bounded sample of frames of ``paths`` (images, folders, videos), unannotated: every sample carries
    ``GroundTruth(pseudo_gt=True)`` with no boxes; the engine fills in both kinds from its pseudo ground truth panel.

    paths: files or folders; max_frames: at most this many frames (>= 1); seed: the sample's offset (module
    docstring). Sample ids: the file path for an image, ``<path>#<frame index, 0-based>`` for a video frame. A video
    that cannot be opened raises :class:`~anonlab.io.images.ImageReadError` (one line, naming it) here, before any
    work; a frame or image that cannot be decoded raises it from :meth:`load` (the engine lists it and goes on).
    """

    pseudo_kinds: tuple[str, ...] = KINDS
    sequential = True  # video frames are read forward from one reader per file

    def __init__(self, paths: list[str], max_frames: int = 64, seed: int = 0) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
            raise ValueError(f"footage dataset: max_frames must be an integer >= 1, got {max_frames!r}")
        self.files = footage_files(list(paths))
        self.max_frames, self.seed = max_frames, int(seed)
        slots: list[tuple[Path, int | None]] = []
        for f in self.files:
            if f.suffix.lower() in VIDEO_SUFFIXES:
                reader = VideoReader(f)
                try:
                    slots.extend((f, k) for k in range(len(reader)))
                finally:
                    reader.close()
            else:
                slots.append((f, None))
        self._slots = [slots[i] for i in even_sample(len(slots), max_frames, self.seed)]
        self._ids = [str(f) if k is None else f"{f}#{k}" for f, k in self._slots]
        self._reader: tuple[Path, VideoReader] | None = None

    def refs(self) -> list[str]:
        return list(self._ids)

    def source_files(self) -> list[Path]:
        return list(self.files)

    def load(self, index: int) -> Sample:
        """The ``index``-th sampled frame as ``uint8 (3, H, W)`` RGB, upright."""
        if not 0 <= index < len(self._slots):
            raise IndexError(f"footage index {index} out of range [0, {len(self._slots)})")
        path, k = self._slots[index]
        if k is None:
            d = load_image(path)
            return self.sample(self._ids[index], d.image, GroundTruth(pseudo_gt=True), str(path), d.notes(path))
        if self._reader is None or self._reader[0] != path:
            if self._reader is not None:
                self._reader[1].close()
            self._reader = (path, VideoReader(path))
        reader = self._reader[1]
        notes = {str(path): reader.notes} if reader.notes else {}
        return self.sample(self._ids[index], reader.read(k), GroundTruth(pseudo_gt=True), f"{path}#{k}", notes)

    def __repr__(self) -> str:
        return f"FootageDataset(files={len(self.files)}, max_frames={self.max_frames}, seed={self.seed}, n={len(self)})"

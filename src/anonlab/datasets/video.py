"""The ``video`` dataset: frames of a video file or a frame folder, no annotations.

Video files are read by :class:`anonlab.io.video.VideoReader` (PyAV; upright frames, the main stream, damage
reported), re-exported here with ``VIDEO_SUFFIXES`` for the datasets that import them from this module.
"""

from __future__ import annotations

from pathlib import Path

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.datasets.folder import list_images
from anonlab.io.images import load_image
from anonlab.io.video import VIDEO_SUFFIXES, VideoReader
from anonlab.types import KINDS, GroundTruth, Sample

__all__ = ["VIDEO_SUFFIXES", "VideoDataset", "VideoReader", "check_stride"]

def check_stride(stride: int, max_frames: int | None, where: str) -> tuple[int, int | None]:
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"{where}: stride must be an integer >= 1, got {stride!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"{where}: max_frames must be an integer >= 1 or null, got {max_frames!r}")
    return stride, max_frames


@DATASETS.register("video")
class VideoDataset(Dataset):
    """Frames of one video file, or the images of a frame folder, without annotations.

    path: a video file (``VIDEO_SUFFIXES``, anything FFmpeg reads) or a folder of frame images (sorted by name).
    stride: keep every ``stride``-th frame (frames 0, stride, 2*stride, ...); max_frames: keep at most this many.
    Sample ids: ``<video stem>/<frame index, 0-based, 6 digits>`` for a video, the file name for a folder.
    Frames are upright (a phone clip's display-matrix rotation applied); a sample's ``notes`` name the file and
    what the reader applied or found damaged. Every sample carries ``GroundTruth(pseudo_gt=True)`` with no boxes; :attr:`annotated` is False and
    :attr:`pseudo_kinds` lists both kinds: the engine fills in pseudo ground truth from its detector panel.
    """

    pseudo_kinds: tuple[str, ...] = KINDS
    sequential = True  # one VideoReader: decode forward, in order, from one thread

    def __init__(self, path: str, stride: int = 1, max_frames: int | None = None) -> None:
        self.path = Path(path).expanduser()
        self.stride, self.max_frames = check_stride(stride, max_frames, "video dataset")
        self._reader: VideoReader | None = None
        self._files: list[str] = []
        if self.path.is_dir():
            self._files = list_images(self.path)
            if not self._files:
                raise ValueError(f"video dataset: no image files directly in frame folder {self.path}")
            n = len(self._files)
        elif self.path.is_file():
            self._reader = VideoReader(self.path)
            n = len(self._reader)
        else:
            raise FileNotFoundError(f"video dataset path {str(path)!r} is neither a video file nor a frame folder")
        self._frames = list(range(0, n, self.stride))[: self.max_frames]
        stem = self.path.stem
        self._ids = ([self._files[k] for k in self._frames] if self._reader is None
                     else [f"{stem}/{k:06d}" for k in self._frames])


    def refs(self) -> list[str]:
        return list(self._ids)

    def source_files(self) -> list[Path]:
        return [self.path] if self._reader is not None else [self.path / self._files[k] for k in self._frames]

    def load(self, index: int) -> Sample:
        if not 0 <= index < len(self._ids):
            raise IndexError(f"video dataset index {index} out of range [0, {len(self._ids)})")
        k = self._frames[index]
        if self._reader is None:
            p = self.path / self._files[k]
            d = load_image(p)
            return self.sample(self._ids[index], d.image, GroundTruth(pseudo_gt=True), str(p), d.notes(p))
        notes = {str(self.path): self._reader.notes} if self._reader.notes else {}
        return self.sample(self._ids[index], self._reader.read(k), GroundTruth(pseudo_gt=True), f"{self.path}#{k}",
                           notes)

    def __repr__(self) -> str:
        return (f"VideoDataset(path={str(self.path)!r}, stride={self.stride}, max_frames={self.max_frames}, "
                f"n={len(self._ids)})")

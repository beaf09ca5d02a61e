"""The ``video`` dataset (frames of a video file or a frame folder, no annotations) and :class:`VideoReader`, the
streaming random-access frame reader shared with the ``mot`` dataset.

Decoding uses PyAV (``av``, FFmpeg bindings), imported when a reader is built. Nothing decodes a whole video:
the reader indexes the packets' timestamps once (demux only, no decoding), then for each requested frame either
decodes forward from the last frame it returned (sequential access, the engine's order) or seeks to the nearest
key frame before it and decodes up to it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch import Tensor

from anonlab.datasets.base import DATASETS, Dataset
from anonlab.datasets.folder import list_images
from anonlab.io.images import ImageReadError, read_image
from anonlab.types import KINDS, GroundTruth, Sample

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv")

#: decode forward (instead of seeking) when the wanted frame is at most this many frames ahead
_FORWARD_WINDOW = 64


class VideoReader:
    """Frame ``k`` (0-based, presentation order) of a video file as ``uint8 (3, H, W)`` RGB, decoded on demand.

    ``len(reader)`` is the number of video frames (packets in the stream, counted once by demuxing, without
    decoding); ``size_hw`` the coded frame size; ``fps`` the stream's average rate (0.0 if unknown).

    Frames are numbered by counting decoder output, never from timestamps (AVI files carry decode-order
    timestamps, so B-frames come out with non-monotonic ``pts``). To reach frame ``k`` the reader decodes forward
    from the last frame it returned when ``k`` is at most ``_FORWARD_WINDOW`` ahead, else it seeks to the last key
    frame at or before decode position ``k`` and counts from there (a key frame's presentation index equals its
    decode position in closed-GOP streams; if the first frame after a seek is not an intra-coded key frame, the
    reader decodes from the start instead). Raises :class:`~anonlab.io.images.ImageReadError` naming the file.
    """

    def __init__(self, path: str | Path) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video {self.path} does not exist")
        keys: list[tuple[int, int]] = []  # (decode position, seek timestamp) of key frames
        n = 0
        try:
            with av.open(str(self.path)) as c:
                if not c.streams.video:
                    raise ImageReadError(f"cannot read video {self.path}: it has no video stream")
                s = c.streams.video[0]
                self.size_hw = (int(s.codec_context.height), int(s.codec_context.width))
                self.fps = float(s.average_rate) if s.average_rate else 0.0
                for pkt in c.demux(s):
                    if not pkt.size:
                        continue
                    ts = pkt.pts if pkt.pts is not None else pkt.dts
                    if pkt.is_keyframe and ts is not None:
                        keys.append((n, ts))
                    n += 1
        except av.error.FFmpegError as e:
            raise ImageReadError(f"cannot read video {self.path}: {e}") from e
        if n == 0:
            raise ImageReadError(f"cannot read video {self.path}: no video frames")
        self._n = n
        self._keys = keys
        self._container = None
        self._frames = None  # decoder iterator
        self._next: int | None = None  # index of the frame the iterator yields next (None: must seek)

    def __len__(self) -> int:
        return self._n

    def _open(self):
        import av

        if self._container is None:
            self._container = av.open(str(self.path))
        return self._container, self._container.streams.video[0]

    def _seek(self, index: int) -> None:
        """Position the decoder so that it yields frame ``self._next <= index`` next."""
        import bisect

        c, s = self._open()
        k = bisect.bisect_right(self._keys, (index, float("inf"))) - 1
        if k <= 0:
            c.seek(0)
            self._frames, self._next = iter(c.decode(s)), 0
            return
        pos, ts = self._keys[k]
        c.seek(ts, stream=s, backward=True, any_frame=False)
        frames = iter(c.decode(s))
        first = next(frames, None)
        # not an intra frame (AVI flags some P-frames as key frames) or an inexact seek: count from the start
        if (first is None or not first.key_frame or getattr(first.pict_type, "name", str(first.pict_type)) != "I"
                or (first.pts is not None and first.pts != ts)):
            c.seek(0)
            self._frames, self._next = iter(c.decode(s)), 0
            return
        self._frames = itertools.chain([first], frames)
        self._next = pos

    def read(self, index: int) -> Tensor:
        """Frame ``index`` as a contiguous ``uint8 (3, H, W)`` RGB CPU tensor."""
        import av

        if not 0 <= index < self._n:
            raise IndexError(f"frame {index} out of range [0, {self._n}) of video {self.path}")
        try:
            if self._next is None or not 0 <= index - self._next <= _FORWARD_WINDOW:
                self._seek(index)
            for frame in self._frames:
                k = self._next
                self._next = k + 1
                if k == index:
                    rgb = frame.to_ndarray(format="rgb24")
                    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
        except av.error.FFmpegError as e:
            self._next = None
            raise ImageReadError(f"cannot decode frame {index} of video {self.path}: {e}") from e
        self._next = None
        raise ImageReadError(f"cannot decode frame {index} of video {self.path}: the stream ended before it "
                             f"({self._n} packets)")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames, self._next = None, None, None

    def __getstate__(self) -> dict:  # picklable (e.g. for data-loader workers): the open decoder is not
        state = dict(self.__dict__)
        state.update(_container=None, _frames=None, _next=None)
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


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
    Every sample carries ``GroundTruth(pseudo_gt=True)`` with no boxes; :attr:`annotated` is False and
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

    def load(self, index: int) -> Sample:
        if not 0 <= index < len(self._ids):
            raise IndexError(f"video dataset index {index} out of range [0, {len(self._ids)})")
        k = self._frames[index]
        if self._reader is None:
            p = self.path / self._files[k]
            return Sample(self._ids[index], read_image(p), GroundTruth(pseudo_gt=True), str(p))
        return Sample(self._ids[index], self._reader.read(k), GroundTruth(pseudo_gt=True), f"{self.path}#{k}")

    def __repr__(self) -> str:
        return (f"VideoDataset(path={str(self.path)!r}, stride={self.stride}, max_frames={self.max_frames}, "
                f"n={len(self._ids)})")

"""Video decoding and encoding: the one home of PyAV (FFmpeg). :class:`VideoWriter` encodes (H.264 by default)
with no metadata; :class:`VideoReader` decodes.

Reading:  :class:`VideoReader` gives frame ``k`` of a file as
``uint8 (3, H, W)`` RGB, upright, decoded on demand.

- The main video stream is read: attached pictures (cover art) and timed-thumbnail streams are skipped; among the
  rest the one with the most frames (then pixels, then FFmpeg's ``av_find_best_stream`` choice) wins, so an
  unflagged 1-frame thumbnail track beside the clip is not read.
- The display matrix (phones store portrait clips as landscape frames plus a rotation, ISO/IEC 14496-12 ``tkhd``)
  is applied to every frame, as ``ffmpeg``'s autorotate does (a quarter turn, a half turn, or their mirrored
  forms); :attr:`VideoReader.orientation` is the equivalent EXIF orientation (1 = none) and
  :attr:`VideoReader.notes` says, on one line, what was applied and what damage was found.
- Damage: a file whose packets end early (truncated download, a camera that lost power) keeps the frames it holds;
  the shortfall from the frame count the header promises is reported in :attr:`VideoReader.notes`, not raised.
  A frame that cannot be decoded raises :class:`~anonlab.io.images.ImageReadError` from :meth:`VideoReader.read`
  (the engine lists it as failed and goes on).

Nothing decodes a whole video: the reader indexes the packets' timestamps once (demux only, no decoding) and
decodes the first frame (for its size and display matrix); then for each requested frame it either decodes
forward from the last frame it returned (sequential access, the engine's order) or seeks to the nearest key frame
before it and decodes up to it.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from pathlib import Path
from typing import Self

import torch
from torch import Tensor

from anonlab.io.images import ORIENTATIONS, ImageReadError, check_pixels, orient

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv")

#: decode forward (instead of seeking) when the wanted frame is at most this many frames ahead
_FORWARD_WINDOW = 64


def display_orientation(matrix: tuple[int, ...] | None) -> int:
    """The EXIF orientation (1-8) equivalent to a display matrix (9 int32, 16.16 fixed point, libavutil/display.h),
    following ffmpeg's autorotate (fftools ``get_rotation`` and the transpose/flip it inserts). None -> 1.
    Raises ``ValueError`` for a rotation that is not a multiple of 90° (ffmpeg would rotate by an odd angle)."""
    if matrix is None:
        return 1
    a, b, _, c, d, *_ = matrix
    sx, sy = (a * a + c * c) ** 0.5, (b * b + d * d) ** 0.5
    if sx == 0 or sy == 0:
        return 1  # a degenerate matrix: ffmpeg shows such frames as stored
    import math

    # av_display_rotation_get returns -atan2(b, a); ffmpeg's theta is its negation (clockwise), in [0, 360)
    theta = round(math.degrees(math.atan2(b / sy, a / sx))) % 360
    if abs(theta - 90 * round(theta / 90)) > 1:
        raise ValueError(f"display matrix rotates by {theta}°, not a multiple of 90°")
    theta = (90 * round(theta / 90)) % 360
    if theta == 90:
        return 5 if c > 0 else 6  # cclock_flip (transpose) / clock
    if theta == 270:
        return 7 if c < 0 else 8  # clock_flip (transverse) / cclock
    if theta == 180:
        return {(True, True): 3, (True, False): 2, (False, True): 4}.get((a < 0, d < 0), 1)
    return 4 if d < 0 else (2 if a < 0 else 1)


def _frame_matrix(frame) -> tuple[int, ...] | None:
    for sd in frame.side_data:  # (PyAV 18: .values() raises KeyError for SEI entries; iterating is fine)
        if "DISPLAYMATRIX" in str(sd.type):
            raw = bytes(sd)
            return struct.unpack("=9i", raw[:36]) if len(raw) >= 36 else None
    return None


def _main_stream(container, path: Path):
    """The stream to read: not a cover picture nor a thumbnail track; FFmpeg's best among the rest."""
    import av

    skip = av.stream.Disposition.attached_pic | av.stream.Disposition.timed_thumbnails
    # (a stream FFmpeg has no decoder for has no codec context)
    streams = [s for s in container.streams.video
               if not (int(s.disposition) & int(skip)) and s.codec_context is not None]
    if not streams:
        what = ("no video stream" if not container.streams.video
                else "only cover-art, thumbnail or undecodable video streams")
        raise ImageReadError(f"cannot read video {path}: it has {what}")
    best = container.streams.best("video")
    # a thumbnail track without the disposition flag (a 1-frame stream beside the clip) loses to the clip:
    # most frames first, then most pixels, then FFmpeg's choice
    return max(streams, key=lambda s: (s.frames or 0, s.codec_context.width * s.codec_context.height, s is best))


class VideoReader:
    """Frame ``k`` (0-based, presentation order) of a video file as ``uint8 (3, H, W)`` RGB, upright, decoded on
    demand.

    ``len(reader)`` is the number of video frames (packets of the main stream, counted once by demuxing, without
    decoding; packets an edit list discards, the pre-roll of a clip trimmed without re-encoding, give no frame); ``size_hw`` the upright frame size (the size ffmpeg, OpenCV and deface report); ``fps`` the
    stream's average rate (0.0 if unknown); ``orientation`` the EXIF-equivalent orientation applied (1 = none);
    ``notes`` a one-line account of the rotation applied and the damage found (None when neither).

    Frames are numbered by counting decoder output, never from timestamps (AVI files carry decode-order
    timestamps, so B-frames come out with non-monotonic ``pts``). To reach frame ``k`` the reader decodes forward
    from the last frame it returned when ``k`` is at most ``_FORWARD_WINDOW`` ahead, else it seeks to the last key
    frame at or before decode position ``k`` and counts from there (a key frame's presentation index equals its
    decode position in closed-GOP streams; if the first frame after a seek is not an intra-coded key frame, the
    reader decodes from the start instead). Raises :class:`~anonlab.io.images.ImageReadError` naming the file
    when it holds no readable video frame, and ``FileNotFoundError`` when it does not exist.
    """

    def __init__(self, path: str | Path) -> None:
        import av

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video {self.path} does not exist")
        keys: list[tuple[int, int]] = []  # (decode position, seek timestamp) of key frames
        n = n_all = 0  # packets that give a frame; all packets (with the discarded pre-roll of an edit list)
        stamps: list[int] | None = []  # presentation timestamps of the packets that give a frame
        damage: list[str] = []
        try:
            with av.open(str(self.path)) as c:
                s = _main_stream(c, self.path)
                self._stream_index = s.index
                w, h = int(s.codec_context.width), int(s.codec_context.height)
                check_pixels(f"cannot read video {self.path}", w, h)
                self.fps = float(s.average_rate) if s.average_rate else 0.0
                self._rate, self._time_base = s.average_rate, s.time_base
                sar = s.sample_aspect_ratio or s.codec_context.sample_aspect_ratio
                promised = int(s.frames or 0)
                try:
                    for pkt in c.demux(s):
                        if not pkt.size:
                            continue
                        n_all += 1
                        if pkt.is_discard:  # before an edit list's start (a clip trimmed without re-encoding):
                            continue  # decoded as a reference, but the decoder gives no frame for it
                        ts = pkt.pts if pkt.pts is not None else pkt.dts
                        if pkt.is_keyframe and ts is not None:
                            keys.append((n, ts))
                        if stamps is not None and pkt.pts is not None:
                            stamps.append(pkt.pts)
                        else:
                            stamps = None
                        n += 1
                except av.error.FFmpegError as e:
                    damage.append(f"demuxing stopped after {n} packets ({e})")
                if promised > n_all:
                    damage.append(f"the header promises {promised} frames, the file holds {n} (truncated?)")
                first = self._first_frame(c, s) if n else None
        except av.error.FFmpegError as e:
            raise ImageReadError(f"cannot read video {self.path}: {e}") from e
        except (ValueError, OverflowError) as e:  # PyAV's own checks (bad rates, sizes) on a malformed header
            if isinstance(e, ImageReadError):
                raise
            raise ImageReadError(f"cannot read video {self.path}: {e}") from e
        if n == 0 or first is None:
            raise ImageReadError(f"cannot read video {self.path}: no decodable video frame"
                                 + (f" ({'; '.join(damage)})" if damage else ""))
        try:
            self.orientation = display_orientation(_frame_matrix(first))
        except ValueError as e:
            raise ImageReadError(f"cannot read video {self.path}: {e}") from e
        fh, fw = first.height, first.width
        self.size_hw = (fw, fh) if self.orientation >= 5 else (fh, fw)
        notes = []
        if self.orientation != 1:
            notes.append(f"display matrix: {ORIENTATIONS[self.orientation]} (EXIF-equivalent orientation "
                         f"{self.orientation})")
        notes.extend(damage)
        self.notes: str | None = "; ".join(notes) or None
        self._n = n
        self._keys = keys
        # frame k's presentation timestamp is the k-th smallest packet pts: the same as the decoded frame's pts in
        # a well-formed file, and right where that is not (AVI stores decode-order counters as pts, so frames
        # of a stream with B-frames come out with pts 1, 4, 3, 5, 2, ...)
        self._stamps = sorted(stamps) if stamps and len(stamps) == n else None
        self._container = None
        self._frames = None  # decoder iterator
        self._next: int | None = None  # index of the frame the iterator yields next (None: must seek)
        #: presentation timestamp (in :attr:`time_base` units) of the frame :meth:`read` returned last: the k-th
        #: smallest packet pts for frame k (None if the stream gives none)
        self.last_pts: int | None = None
        self.time_base = self._time_base  # Fraction: seconds per pts unit (None if unknown)
        self.rate = self._rate  # the stream's average rate as a Fraction (None if unknown)
        #: pixel width / height of the upright frames (anamorphic DV, HDV, DVD: not 1), None when square or unknown
        self.sample_aspect_ratio = (None if not sar or sar == 1 else 1 / sar if self.orientation >= 5 else sar)

    @staticmethod
    def _first_frame(c, s):
        import av

        c.seek(0)
        try:
            return next(iter(c.decode(s)), None)
        except av.error.FFmpegError:
            return None

    def __len__(self) -> int:
        return self._n

    def _open(self):
        import av

        if self._container is None:
            self._container = av.open(str(self.path))
        return self._container, self._container.streams[self._stream_index]

    def _seek(self, index: int) -> None:
        """Position the decoder so that it yields frame ``self._next <= index`` next."""
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
        """Frame ``index`` as a contiguous ``uint8 (3, H, W)`` RGB CPU tensor, upright (``size_hw``)."""
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
                    # (a stream may change size mid-way: each frame is held to the cap, not only the header's size)
                    check_pixels(f"cannot decode frame {index} of video {self.path}", frame.width, frame.height)
                    rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                    self.last_pts = self._stamps[index] if self._stamps is not None else frame.pts
                    return orient(rgb, self.orientation).contiguous()
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


#: encoder names of the codecs :class:`VideoWriter` writes
VIDEO_ENCODERS = {"h264": "libx264", "h265": "libx265"}
#: NAL unit types of SEI messages (H.264: 6, ITU-T H.264 Table 7-1; H.265: 39 prefix / 40 suffix, H.265 Table 7-1),
#: removed by FFmpeg's ``filter_units`` bitstream filter: x264/x265 write their version and settings there
_SEI_TYPES = {"h264": "6", "h265": "39|40"}


class VideoWriter:
    """Encode ``uint8 (3, H, W)`` RGB frames to a video file (or a binary file object) with PyAV, streaming: each
    frame is encoded as it comes; nothing but the encoder's own look-ahead is held.

    ``target``: a path or a writable binary file object; ``format``: the container (FFmpeg muxer name, e.g. ``mp4``,
    ``matroska``; None = from the path's suffix); ``codec``: a key of :data:`VIDEO_ENCODERS`; ``crf`` the encoder's
    constant rate factor (0-51; 18 is visually lossless for x264); ``preset`` the x264/x265 speed preset;
    ``rate`` the nominal frame rate (an int or Fraction, frames per second); ``sample_aspect_ratio`` the pixels'
    width / height (a Fraction; None = square: pass :attr:`VideoReader.sample_aspect_ratio` so that an anamorphic
    clip is not shown squeezed); ``time_base`` the unit of the ``pts``
    given to :meth:`write` (seconds per unit; None = ``1 / rate``, and frames get pts 0, 1, 2, ...).
    Odd frame sizes are padded to even by edge replication (yuv420p needs even sizes): the file is then one
    row/column larger; :attr:`padded` says by how much (rows, columns).

    Metadata: with ``strip_metadata`` (default) the container is written with FFmpeg's ``bitexact`` flag, so no
    ``encoder`` tag is written, and no other tag (title, location, creation_time, make, model) is set; SEI messages
    (where x264/x265 write their version and settings) are removed from the bitstream (``filter_units``). ``audio_from``: a file whose first
    audio stream is copied (remuxed, not re-encoded, its tags dropped) by :meth:`copy_audio` after the last frame;
    None = no audio stream.

    Raises ``ValueError`` for an unknown codec, a crf outside 0-51, or an ``audio_from`` codec the container cannot
    hold (e.g. pcm_mulaw in MP4); PyAV's ``FFmpegError`` for a write failure.
    """

    def __init__(self, target, size_hw: tuple[int, int], rate=25, *, format: str | None = None, codec: str = "h264",
                 crf: int = 18, preset: str = "medium", time_base=None, sample_aspect_ratio=None,
                 strip_metadata: bool = True,
                 audio_from: str | Path | None = None) -> None:
        import fractions

        import av

        if codec not in VIDEO_ENCODERS:
            raise ValueError(f"unknown video codec {codec!r}; valid: {', '.join(VIDEO_ENCODERS)}")
        if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
            raise ValueError(f"crf must be an integer in [0, 51], got {crf!r}")
        h, w = size_hw
        self.size_hw = (h, w)
        self.padded = (h % 2, w % 2)
        rate = fractions.Fraction(rate).limit_denominator(1001000) if rate else fractions.Fraction(25)
        options = {"fflags": "+bitexact"} if strip_metadata else {}
        self._out = av.open(target if not isinstance(target, (str, Path)) else str(target), "w", format=format,
                            options=options)
        s = self._out.add_stream(VIDEO_ENCODERS[codec], rate=rate)
        s.width, s.height, s.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        opts = {"crf": str(crf), "preset": preset}
        if codec == "h265":
            opts["x265-params"] = "log-level=error"
        s.options = opts
        self._time_base = fractions.Fraction(time_base) if time_base else 1 / rate
        s.codec_context.time_base = self._time_base
        if sample_aspect_ratio:
            s.codec_context.sample_aspect_ratio = fractions.Fraction(sample_aspect_ratio)
        self._stream = s
        # (the SEI filter is made at the first packet: made earlier, it copies the parameters of a not yet opened
        # encoder, 640x480 by default, into the output stream)
        self._bsf, self._sei = None, _SEI_TYPES[codec] if strip_metadata else None
        # (every stream is added before the first packet: the container header is written then)
        self._audio_src, self._audio_out = None, None
        if audio_from is not None:
            src = av.open(str(audio_from))
            if src.streams.audio:
                self._audio_src = src
                try:  # ValueError for a codec the container cannot hold (pcm_mulaw, adpcm in MP4)
                    self._audio_out = self._out.add_stream_from_template(src.streams.audio[0])
                except ValueError:
                    self._release()
                    raise
                self._audio_out.metadata.clear()
            else:
                src.close()
        self._count = 0
        self._last_pts: int | None = None

    def write(self, frame, pts: int | None = None) -> None:
        """Encode one frame: a ``uint8 (3, H, W)`` RGB tensor or an ``(H, W, 3)`` uint8 numpy array of the size
        given; ``pts`` in ``time_base`` units (None = the frame's index). A pts not above the previous one is
        moved one unit after it (the encoder needs increasing timestamps)."""
        import av
        import numpy as np

        arr = frame.permute(1, 2, 0).contiguous().cpu().numpy() if isinstance(frame, Tensor) else frame
        if arr.shape[:2] != self.size_hw:
            raise ValueError(f"frame of size {arr.shape[:2]} given to a {self.size_hw} video writer")
        if any(self.padded):
            arr = np.pad(arr, ((0, self.padded[0]), (0, self.padded[1]), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
        pts = self._count if pts is None else int(pts)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        vf.pts, vf.time_base = pts, self._time_base
        self._last_pts = pts
        self._count += 1
        self._mux(self._stream.encode(vf))

    def _mux(self, packets) -> None:
        for packet in packets:
            if self._sei is not None and self._bsf is None:
                from av.bitstream import BitStreamFilterContext

                # (no output stream given: filter_units leaves the stream parameters as they are)
                self._bsf = BitStreamFilterContext(f"filter_units=remove_types={self._sei}", self._stream)
            for out in (self._bsf.filter(packet) if self._bsf is not None else [packet]):
                self._out.mux(out)

    def copy_audio(self) -> bool:
        """Copy the packets of ``audio_from``'s first audio stream into the output; False when there is none. Call
        after the last :meth:`write` and before :meth:`close`."""
        if self._audio_src is None:
            return False
        a = self._audio_src.streams.audio[0]
        for packet in self._audio_src.demux(a):
            if packet.dts is None:
                continue
            packet.stream = self._audio_out
            self._out.mux(packet)
        return True


    def close(self) -> None:
        """Flush the encoder and finish the file."""
        if self._out is None:
            return
        try:
            self._mux(self._stream.encode())
            if self._bsf is not None:
                for out in self._bsf.filter(None):
                    self._out.mux(out)
        finally:
            self._release()

    def _release(self) -> None:
        if self._audio_src is not None:
            self._audio_src.close()
            self._audio_src = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._release()

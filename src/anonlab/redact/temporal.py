"""Redaction boxes over time: detections tracked across frames, held through short misses in both directions,
interpolated between hits and grown with motion, so that a face covered in frames t-1 and t+1 is covered in t.

Tracking is ByteTrack from the ``trackers`` package (Roboflow, Apache-2.0; Zhang et al. 2022,
arXiv:2110.06864): it only assigns identities. Coverage never depends on it: every raw detection is redacted in
its own frame and held ``hold`` frames before and after; tracks add the boxes between two hits of one object.

The boxes are worked out frame by frame (:class:`Filler`): a frame's boxes are final once :func:`look_ahead`
(``hold + max_gap + 1``) later frames are known, so ``anonlab redact`` decodes a video once and keeps only that
many frames waiting; :func:`fill` is the same over a whole video.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: upper bound of ``hold`` and ``max_gap`` (frames; 10 s at 25 frames/s): a video is streamed with
#: ``hold + max_gap + 1`` decoded frames waiting (:func:`look_ahead`), at the bounds 501 frames, 3.1 GB at 1080p;
#: an unbounded value would hold the whole video in memory
MAX_FRAMES = 250


@dataclass(frozen=True)
class TemporalOptions:
    """``hold``: frames a detection is also redacted before and after its own (0 to :data:`MAX_FRAMES`). 4: on
    PETS09 S2L1 frames 101-400 (2x, heads of the MOT tracks; a walker behind a sign post, whose box loses its head
    for a few frames) holds of 2 / 3 / 4 / 5 frames left 25 / 20 / 14 / 11 flicker frames and covered 98.5 / 98.8 /
    99.2 / 99.4 % of head-frames (default ensemble, 2026-11-30; chosen on the frames benchmarks/redact.py scores);
    ``max_gap``: longest run of missed frames between two hits of one track that is filled by interpolation
    (frames, 0 to :data:`MAX_FRAMES`); ``grow``: how much a held box grows per frame away from its hit, as a
    fraction of its size (0.05 = 5 % per frame), plus the object's own motion per frame (pixels, measured between
    hits).
    """

    hold: int = 4
    max_gap: int = 15
    grow: float = 0.05

    def __post_init__(self) -> None:
        for name in ("hold", "max_gap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_FRAMES:
                raise ValueError(f"{name} must be an integer in [0, {MAX_FRAMES}] (frames), got {v!r}")
        if not self.grow >= 0:
            raise ValueError(f"grow must be >= 0 (fraction of the box size per frame), got {self.grow!r}")


def _grow(box: Tensor, frac: float, px: Tensor | float) -> Tensor:
    """Enlarge xyxy ``box`` (4,) about its centre by ``frac`` of its size plus ``px`` pixels on each side."""
    wh = box[2:] - box[:2]
    pad = wh * frac / 2 + px
    return torch.cat([box[:2] - pad, box[2:] + pad])


class Tracker:
    """ByteTrack over one video: :meth:`update` takes one frame's boxes ``float32 (N, 4)`` xyxy pixels and scores
    ``(N,)`` and returns ``(boxes (M, 4), ids (M,) int64)`` of the detections it assigned to tracks (confirmed on
    their first frame: ``minimum_consecutive_frames=1``). ``fps``: the video's frame rate (ByteTrack scales its
    lost-track buffer by it); ``max_gap``: frames a lost track is kept."""

    def __init__(self, fps: float, max_gap: int, low_score: float) -> None:
        from trackers import ByteTrackTracker

        # ByteTrack's lost_track_buffer counts 30-fps frames; ours counts this video's frames
        buffer = max(1, round(max_gap * 30.0 / fps)) if fps > 0 else max(1, max_gap)
        self._t = ByteTrackTracker(lost_track_buffer=buffer, frame_rate=fps if fps > 0 else 30.0,
                                   track_activation_threshold=low_score, minimum_consecutive_frames=1,
                                   minimum_iou_threshold=0.1, high_conf_det_threshold=max(low_score, 0.5))

    def update(self, boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
        import numpy as np
        import supervision as sv

        dets = sv.Detections(xyxy=boxes.cpu().numpy().astype(np.float32).reshape(-1, 4),
                             confidence=scores.cpu().numpy().astype(np.float32).reshape(-1),
                             class_id=np.zeros(len(scores), dtype=int))
        out = self._t.update(dets)
        ids = np.asarray(out.tracker_id if out.tracker_id is not None else np.full(len(out), -1))
        keep = ids >= 0
        return (torch.from_numpy(np.asarray(out.xyxy, dtype=np.float32)[keep]).reshape(-1, 4),
                torch.from_numpy(ids[keep].astype(np.int64)))


def look_ahead(opts: TemporalOptions) -> int:
    """How many later frames can change a frame's boxes under :class:`Filler`'s rules (frames): frame f is final
    once frames up to f + ``look_ahead`` have been pushed.

    The bound, from :class:`Filler`'s cases: a raw detection of frame f + ``hold`` is held back to f (2); a pair of
    hits a < f < b is at most ``max_gap + 1`` frames apart, so b <= f + ``max_gap`` (3); a run's first hit s may be
    up to ``hold`` frames after f, and the motion its hold uses is measured at its second hit, at most
    ``max_gap + 1`` frames later (or, with none, the run is known to have one hit ``max_gap + 1`` frames after s):
    s + ``max_gap`` + 1 <= f + ``hold + max_gap + 1`` (4). Hence ``hold + max_gap + 1``, or ``max_gap`` when
    ``hold`` is 0 (no holds at all)."""
    return opts.max_gap + (opts.hold + 1 if opts.hold else 0)


@dataclass
class _Run:
    """Consecutive hits of one track separated by at most ``max_gap`` missed frames: its first and latest hit
    (frame, box ``(4,)``) and the motion per frame (pixels) of its latest pair (None while it has one hit)."""

    first: int
    first_box: Tensor
    last: int
    last_box: Tensor
    speed: Tensor | None = None


class Filler:
    """Per-frame redaction boxes over time, frame by frame: :meth:`push` takes one frame's detections and tracks
    (in frame order, from 0) and returns the boxes of the frames that became final, oldest first;
    :meth:`finish` returns the rest at the end of the video. Every frame's boxes are returned exactly once, in
    order, as ``float32 (K, 4)`` xyxy pixels; frame f is returned once frame f + ``lag`` has been pushed
    (``lag`` defaults to :func:`look_ahead`, the smallest that never changes a returned frame; a larger one only
    delays). At most ``lag + hold + 1`` frames' boxes and one :class:`_Run` per recently seen track are held.

    The boxes of frame f (``opts``: :class:`TemporalOptions`):

    1. its own detections (``raw``);
    2. every detection of frames f - hold .. f + hold, grown by ``grow`` per frame of distance;
    3. for each pair of consecutive hits a < f < b of one track, at most ``max_gap`` missed frames apart
       (``b - a - 1 <= max_gap``), the box linearly interpolated between them, grown, per frame to the nearer
       hit, by ``grow`` plus the pair's motion per frame (pixels: the larger centre displacement per frame from a
       to b);
    4. a track's hits linked by such pairs form a *run*; within ``hold`` frames before a run's first hit and
       after its last, that hit's box grown, per frame of distance, by ``grow`` plus the motion of the run's
       nearest pair (its first pair before it, its last pair after it; 0 for a one-hit run).

    (Until 2026-11-30 (4) took whole tracks and used the track's last pair's motion on both sides: the hold before
    a track's first hit then depended on its last hit, arbitrarily far ahead, which no bounded look-ahead can
    know. On PETS09 S2L1's first 60 frames 18 of 1709 boxes changed, all before first hits.)

    Raises ``RuntimeError`` if a box would land in a frame already returned (a ``lag`` shorter than
    :func:`look_ahead`).
    """

    def __init__(self, opts: TemporalOptions, lag: int | None = None) -> None:
        self.opts = opts
        self.lag = look_ahead(opts) if lag is None else int(lag)
        self._pushed = 0  # frames pushed
        self._returned = 0  # frames returned
        self._out: dict[int, list[Tensor]] = {}  # frame -> its boxes so far (frames not yet returned)
        self._runs: dict[int, _Run] = {}  # track id -> its open run

    def _add(self, f: int, box: Tensor) -> None:
        if f < 0:
            return
        if f < self._returned:
            raise RuntimeError(f"Filler: a box for frame {f}, already returned (lag {self.lag} < look_ahead "
                               f"{look_ahead(self.opts)})")
        self._out.setdefault(f, []).append(box)

    def _hold(self, f0: int, box: Tensor, speed: Tensor, sign: int) -> None:
        """(4): ``box`` of the hit at ``f0`` in the ``hold`` frames before (sign -1) or after (+1) it."""
        for k in range(1, self.opts.hold + 1):
            self._add(f0 + sign * k, _grow(box, self.opts.grow * k, speed * k))

    def _close(self, run: _Run) -> None:
        """(4) at a run's end: the hold after its last hit (and, for a one-hit run, before it)."""
        if run.speed is None:  # one hit
            self._hold(run.first, run.first_box, torch.zeros(()), -1)
        self._hold(run.last, run.last_box, run.speed if run.speed is not None else torch.zeros(()), 1)

    def push(self, raw: Tensor, tracked: tuple[Tensor, Tensor]) -> list[Tensor]:
        """Add the next frame: ``raw`` every detection ``(N, 4)``; ``tracked`` ``(boxes (M, 4), ids (M,))`` from
        :class:`Tracker`. Returns the boxes of the frames that are now final (maybe none), oldest first."""
        o = self.opts
        f = self._pushed
        self._pushed += 1
        for box in raw:
            self._add(f, box)
            for k in range(1, o.hold + 1):
                g = _grow(box, o.grow * k, 0.0)
                self._add(f - k, g)
                self._add(f + k, g)
        boxes, ids = tracked
        for bb, i in zip(boxes, ids.tolist()):
            run = self._runs.get(i)
            if run is None:
                self._runs[i] = _Run(f, bb, f, bb)
                continue
            a, ba = run.last, run.last_box  # (an open run's last hit is at most max_gap + 1 frames back)
            gap = f - a
            centre_a, centre_b = (ba[:2] + ba[2:]) / 2, (bb[:2] + bb[2:]) / 2
            speed = (centre_b - centre_a).abs().max() / gap
            for g in range(a + 1, f):
                t = (g - a) / gap
                d = min(g - a, f - g)
                self._add(g, _grow(ba * (1 - t) + bb * t, o.grow * d, speed * d))
            if run.speed is None:  # the run's first pair: its motion is held before the first hit
                self._hold(run.first, run.first_box, speed, -1)
            run.last, run.last_box, run.speed = f, bb, speed
        # a run whose next hit would be more than max_gap missed frames away has ended
        for i in [i for i, run in self._runs.items() if f - run.last > o.max_gap]:
            self._close(self._runs.pop(i))
        return self._take(f + 1 - self.lag)

    def finish(self) -> list[Tensor]:
        """End of the video: the boxes of every frame not yet returned, oldest first."""
        for run in self._runs.values():
            self._close(run)
        self._runs.clear()
        out = self._take(self._pushed)
        self._out.clear()  # (holds past the last frame)
        return out

    def _take(self, end: int) -> list[Tensor]:
        out = []
        while self._returned < min(end, self._pushed):
            b = self._out.pop(self._returned, [])
            out.append(torch.stack(b).float() if b else torch.zeros(0, 4))
            self._returned += 1
        return out


def fill(raw: list[Tensor], tracked: list[tuple[Tensor, Tensor]], opts: TemporalOptions) -> list[Tensor]:
    """Per-frame redaction boxes ``float32 (K, 4)`` xyxy pixels for a whole video of ``len(raw)`` frames: a
    :class:`Filler` (its docstring gives the rules) fed every frame before any is returned, the reference that the
    streaming use (``anonlab redact``, a :class:`Filler` with its :func:`look_ahead`) must equal.

    ``raw[f]``: every detection of frame f ``(N, 4)``; ``tracked[f]``: ``(boxes (M, 4), ids (M,))`` from
    :class:`Tracker`. Raises ``ValueError`` when the two lists differ in length.
    """
    if len(raw) != len(tracked):
        raise ValueError(f"fill: {len(raw)} frames of detections but {len(tracked)} of tracks")
    filler = Filler(opts, lag=len(raw))
    out: list[Tensor] = []
    for r, t in zip(raw, tracked):
        out += filler.push(r, t)
    return out + filler.finish()

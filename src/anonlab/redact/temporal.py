"""Redaction boxes over time: detections tracked across frames, held through short misses in both directions,
interpolated between hits and grown with motion, so that a face covered in frames t-1 and t+1 is covered in t.

Tracking is ByteTrack from the ``trackers`` package (Roboflow, Apache-2.0; Zhang et al. 2022,
arXiv:2110.06864): it only assigns identities. Coverage never depends on it: every raw detection is redacted in
its own frame and held ``hold`` frames before and after; tracks add the boxes between two hits of one object.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TemporalOptions:
    """``hold``: frames a detection is also redacted before and after its own (>= 0; 2 covers a one-frame miss
    with margin); ``max_gap``: longest run of missed frames between two hits of one track that is filled by
    interpolation (frames, >= 0); ``grow``: how much a held box grows per frame away from its hit, as a fraction
    of its size (0.05 = 5 % per frame), plus the object's own motion per frame (pixels, measured between hits).
    """

    hold: int = 2
    max_gap: int = 15
    grow: float = 0.05

    def __post_init__(self) -> None:
        for name in ("hold", "max_gap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (frames), got {v!r}")
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


def fill(raw: list[Tensor], tracked: list[tuple[Tensor, Tensor]], opts: TemporalOptions) -> list[Tensor]:
    """Per-frame redaction boxes ``float32 (K, 4)`` xyxy pixels for a video of ``len(raw)`` frames.

    ``raw[f]``: every detection of frame f ``(N, 4)``; ``tracked[f]``: ``(boxes (M, 4), ids (M,))`` from
    :class:`Tracker`. A frame gets (1) its own detections; (2) every detection of frames f-hold .. f+hold, grown
    by ``grow`` per frame of distance; (3) for each track with hits at frames a < f < b, ``b - a - 1 <= max_gap``,
    the box linearly interpolated between them, grown by ``grow`` per frame to the nearer hit plus the track's
    motion per frame (pixels, the larger centre displacement per frame between the two hits); (4) within ``hold``
    frames past a track's first/last hit, that hit's box grown also by the track's last measured motion.
    """
    n = len(raw)
    out: list[list[Tensor]] = [[] for _ in range(n)]
    for f, boxes in enumerate(raw):
        for box in boxes:
            out[f].append(box)
            for k in range(1, opts.hold + 1):
                g = _grow(box, opts.grow * k, 0.0)
                if f - k >= 0:
                    out[f - k].append(g)
                if f + k < n:
                    out[f + k].append(g)
    hits: dict[int, list[tuple[int, Tensor]]] = {}
    for f, (boxes, ids) in enumerate(tracked):
        for box, i in zip(boxes, ids.tolist()):
            hits.setdefault(i, []).append((f, box))
    for seq in hits.values():
        speed = torch.zeros(())
        for (a, ba), (b, bb) in itertools.pairwise(seq):
            gap = b - a
            centre_a, centre_b = (ba[:2] + ba[2:]) / 2, (bb[:2] + bb[2:]) / 2
            speed = (centre_b - centre_a).abs().max() / gap
            if gap < 2 or gap - 1 > opts.max_gap:
                continue
            for f in range(a + 1, b):
                t = (f - a) / gap
                d = min(f - a, b - f)
                out[f].append(_grow(ba * (1 - t) + bb * t, opts.grow * d, speed * d))
        for f0, box, sign in ((seq[0][0], seq[0][1], -1), (seq[-1][0], seq[-1][1], 1)):
            for k in range(1, opts.hold + 1):
                f = f0 + sign * k
                if 0 <= f < n:
                    out[f].append(_grow(box, opts.grow * k, speed * k))
    return [torch.stack(b).float() if b else torch.zeros(0, 4) for b in out]

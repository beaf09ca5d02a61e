"""``anonlab redact`` decodes a video once: a frame is redacted and written as soon as no later frame can change its
boxes (:class:`anonlab.redact.temporal.Filler`, :func:`~anonlab.redact.temporal.look_ahead`). Its boxes must equal
the whole-video :func:`~anonlab.redact.temporal.fill` exactly, for every option combination, on a real clip.
"""

from __future__ import annotations

import pytest
import torch
from conftest import shared_path
from hypothesis import given, settings
from hypothesis import strategies as st

from anonlab.redact import RedactOptions, TemporalOptions, fill
from anonlab.redact.temporal import Filler, look_ahead

# ---------------------------------------------------------------------------------------------------------------
# the incremental filler against the whole-video fill


@st.composite
def detections(draw):
    """A video of 1-60 frames: per frame, raw boxes (integer pixel corners, 4-40 px) and the tracked subset with
    ids from 0-3 (one box per id and frame, as ByteTrack gives), objects appearing, vanishing and coming back."""
    n = draw(st.integers(1, 60))
    raw, tracked = [], []
    for _ in range(n):
        k = draw(st.integers(0, 4))
        xy = draw(st.lists(st.tuples(st.integers(0, 600), st.integers(0, 400), st.integers(4, 40),
                                     st.integers(4, 40)), min_size=k, max_size=k))
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in xy], dtype=torch.float32).reshape(-1, 4)
        ids = draw(st.lists(st.integers(0, 3), min_size=k, max_size=k, unique=True))
        on = torch.tensor(draw(st.lists(st.booleans(), min_size=k, max_size=k)), dtype=torch.bool)
        raw.append(boxes)
        tracked.append((boxes[on], torch.tensor(ids, dtype=torch.int64)[on]))
    return raw, tracked


@settings(max_examples=150, deadline=None)
@given(detections(), st.integers(0, 8), st.integers(0, 20), st.sampled_from([0.0, 0.05, 0.3]))
def test_streaming_fill_equals_whole_video_fill(video, hold, max_gap, grow):
    """Frame by frame with the look-ahead bound: the same boxes, bitwise, as the whole video at once, and never
    more than ``look_ahead`` frames waiting."""
    raw, tracked = video
    opts = TemporalOptions(hold=hold, max_gap=max_gap, grow=grow)
    whole = fill(raw, tracked, opts)
    filler = Filler(opts)
    streamed = []
    for f, (r, t) in enumerate(zip(raw, tracked)):
        streamed += filler.push(r, t)
        assert len(streamed) == max(0, f + 1 - look_ahead(opts))  # each frame out as soon as it is final
    streamed += filler.finish()
    assert len(streamed) == len(whole) == len(raw)
    for f, (a, b) in enumerate(zip(streamed, whole)):
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b), f


@pytest.mark.parametrize("hold,max_gap", [(2, 3), (7, 15), (0, 4)])
def test_look_ahead_is_the_shortest_safe_bound(hold, max_gap):
    """One frame less of look-ahead is not enough: with ``hold`` a track's second hit ``max_gap`` missed frames
    after its first sets the motion held ``hold`` frames before the first (``hold + max_gap + 1`` frames later);
    without ``hold``, the interpolation of the frame after the first hit waits ``max_gap`` frames for the second."""
    opts = TemporalOptions(hold=hold, max_gap=max_gap, grow=0.05)
    s = hold + 1  # the first hit, with room for its hold before it
    n = s + max_gap + 3
    box = torch.tensor([[100.0, 100.0, 120.0, 124.0]])
    raw = [torch.zeros(0, 4)] * n
    raw[s], raw[s + max_gap + 1] = box, box + 30  # moving: the motion changes the held boxes
    none = (torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    tracked = [(r, torch.zeros(len(r), dtype=torch.int64)) if len(r) else none for r in raw]
    whole = fill(raw, tracked, opts)
    ok = Filler(opts)
    streamed = [b for r, t in zip(raw, tracked) for b in ok.push(r, t)] + ok.finish()
    assert len(streamed) == n and all(torch.equal(a, b) for a, b in zip(streamed, whole))
    short = Filler(opts, lag=look_ahead(opts) - 1)
    with pytest.raises(RuntimeError, match="already returned"):
        for r, t in zip(raw, tracked):
            short.push(r, t)


def test_fill_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 frames of detections but 1 of tracks"):
        fill([torch.zeros(0, 4)] * 2, [(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))],
             TemporalOptions())


# ---------------------------------------------------------------------------------------------------------------
# one decoding pass on a real clip: the written frames' boxes equal the whole-video fill


@pytest.fixture(scope="module")
def pets_clip(tmp_path_factory):
    """The first 60 frames of PETS09 S2L1 (480x360, 10 fps; pedestrians whose heads the person detector finds,
    tracked across frames), written losslessly."""
    from anonlab.io.video import VideoReader, VideoWriter

    src = VideoReader(shared_path("datasets/pets09_s2l1_vtest/vtest.avi"))
    clip = tmp_path_factory.mktemp("pets") / "clip.mp4"
    with VideoWriter(clip, src.size_hw, src.rate, crf=0, preset="ultrafast") as w:
        for k in range(60):
            w.write(src.read(k))
    src.close()
    return clip


def _rows(boxes: torch.Tensor) -> list[tuple[float, ...]]:
    assert boxes.dtype == torch.float32 and boxes.shape[1:] == (4,)
    return sorted(map(tuple, boxes.tolist()))  # float32 -> float is exact: equal rows are bitwise equal


@pytest.mark.slow
@pytest.mark.parametrize("every,hold,max_gap,grow,batch", [
    (1, 2, 15, 0.05, 8),  # the defaults: look-ahead 18 frames
    (8, 2, 15, 0.05, 8),  # --detect-every 8: hold 7, look-ahead 23
    (1, 0, 4, 0.0, 3),  # no hold: look-ahead 4, batches smaller than it
    (2, 5, 0, 0.2, 16),  # no interpolation: look-ahead 6, batches larger than it
])
def test_one_pass_boxes_equal_whole_video_fill(pets_clip, tmp_path, every, hold, max_gap, grow, batch):
    """``Redactor.video`` (one decoding pass, frames written as their boxes become final) redacts every frame with
    exactly the boxes of the whole-video ``fill`` (``Redactor.video_boxes``, detection run again on the same
    frames), writes every frame once and ticks the progress once per frame (about 20 s on 2 CPU cores)."""
    from anonlab.io.video import VideoReader
    from anonlab.redact.core import Redactor, torch_threads
    from anonlab.redact.temporal import look_ahead

    opts = RedactOptions(progress=False, detect_every=every, temporal=TemporalOptions(hold, max_gap, grow),
                         batch=batch)
    r = Redactor(opts, record_boxes=True)
    n = len(VideoReader(pets_clip))
    assert n > look_ahead(r.temporal()) + batch  # precondition: frames are written before the end is decoded
    ticks = []
    out = tmp_path / "out.mp4"
    frames, _ = r.video(pets_clip, out, ticks.append)
    with torch_threads(opts.threads):  # (video() runs with these threads: the same arithmetic)
        whole = r.video_boxes(VideoReader(pets_clip))
    assert frames == n == len(whole) == len(r.last_boxes) == sum(ticks) == len(VideoReader(out))
    assert sum(map(len, whole)) > n  # precondition: people found and held
    for f, (streamed, ref) in enumerate(zip(r.last_boxes, whole)):
        assert _rows(streamed) == _rows(ref), f

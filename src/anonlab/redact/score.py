"""Scoring a redaction against exact face boxes over time (``benchmarks/redact.py`` and the tests share it), and
the synthetic walking clip with exact per-frame face boxes and track ids it is scored on."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def walking_clip(pennfudan_root: str | Path, n_frames: int, people: int, seed: int,
                 frame_hw: tuple[int, int] = (720, 1280), fps: float = 25.0):
    """Penn-Fudan pedestrians facing the camera walking over the synthetic plate (:mod:`anonlab.datasets.composite`:
    camera 3 m high, 10 deg tilt, 50 deg HFOV; 1.4 m/s, the compositor's walking speed). Returns ``frames``
    (``uint8 (3, H, W)`` each) and per frame ``(faces float32 (K, 4) xyxy pixels, identities int64 (K,))``: each
    face box is carried from its source crop through the paste (faces derived once per source image by the
    composite's panel); faces hidden more than half by nearer people are left out."""
    from anonlab.camera.compositor import render_clip, sample_walks
    from anonlab.datasets.composite import CompositeDataset

    ds = CompositeDataset(str(pennfudan_root), frame_hw=list(frame_hw), max_sources=40, min_person_px=120,
                          camera_height_m=3.0, tilt_deg=10.0, hfov_deg=50.0, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with_face = [c for c in ds.bank if not torch.isnan(c.face).any()]  # pedestrians facing the camera
    chosen = [with_face[k] for k in torch.randperm(len(with_face), generator=g)[:people].tolist()]
    walks = sample_walks(ds.camera, [c.aspect for c in chosen], n_frames, fps, g, 1.4, ds.person_height_m, 120)
    frames, faces = [], []
    for frame, truth in render_clip(ds._backgrounds[0], chosen, walks, ds.camera):
        frames.append(frame)
        keep = truth.present & ~torch.isnan(truth.faces).any(1) & (truth.face_occlusion <= 0.5)
        faces.append((truth.faces[keep].float(), truth.identities[keep]))
    return frames, faces


def coverage(per_frame_boxes: list[Tensor], faces, size_hw, cover: float = 0.9, shape: str = "ellipse",
             mask_scale: float = 1.3) -> dict:
    """Score per-frame redaction boxes (``float32 (K, 4)`` xyxy pixels) against ``faces`` (per frame: boxes
    ``(M, 4)`` and identities ``(M,)``) in frames of ``size_hw``. The boxes become the mask the redaction draws
    (:func:`anonlab.defenses.regions.make_regions` with ``shape``, ``mask_scale``); a face is covered in a frame
    when at least ``cover`` of its box's pixels are masked. Returns ``face_frames``, ``coverage`` (covered /
    face-frames), ``exposed_frames`` (< 0.5 masked), ``flicker_frames`` (frames where a face is uncovered between
    two frames where it is covered, per identity), ``tracks`` (identities), ``tracks_exposed`` (identities with at
    least one exposed frame) and ``worst_exposure_mean`` (per identity the largest unmasked fraction of its box in
    any one frame, averaged over identities: 0 = never shown, 1 = fully shown at least once)."""
    from anonlab.defenses.regions import make_regions
    from anonlab.types import Detections

    covered: dict[int, list[tuple[int, bool]]] = {}
    worst: dict[int, float] = {}
    tot = ok = exposed = 0
    for f, (boxes, (gt, ids)) in enumerate(zip(per_frame_boxes, faces)):
        d = Detections(boxes.float(), torch.ones(len(boxes)), torch.zeros(len(boxes), dtype=torch.int64),
                       torch.zeros(len(boxes), dtype=torch.int64))
        mask = make_regions(d, 1, size_hw, shape, mask_scale).mask[0, 0]
        for box, i in zip(gt.round().long().tolist(), ids.tolist()):
            x1, y1, x2, y2 = max(0, box[0]), max(0, box[1]), min(size_hw[1], box[2]), min(size_hw[0], box[3])
            if x2 <= x1 or y2 <= y1:
                continue
            frac = mask[y1:y2, x1:x2].float().mean().item()
            tot += 1
            ok += frac >= cover
            exposed += frac < 0.5
            covered.setdefault(i, []).append((f, frac >= cover))
            worst[i] = max(worst.get(i, 0.0), 1.0 - frac)
    flicker = 0
    for seq in covered.values():
        flags = [c for _, c in sorted(seq)]
        hits = [k for k, c in enumerate(flags) if c]
        if hits:
            flicker += sum(1 for k in range(hits[0], hits[-1]) if not flags[k])
    return {"face_frames": tot, "coverage": ok / max(1, tot), "exposed_frames": exposed, "flicker_frames": flicker,
            "tracks": len(covered), "tracks_exposed": sum(1 for w in worst.values() if w > 0.5),
            "worst_exposure_mean": sum(worst.values()) / max(1, len(worst))}


def heads_of_persons(persons: Tensor) -> Tensor:
    """Face ground truth where only whole-person boxes are annotated (PETS09/MOT: no face boxes, faces 5-15 px):
    ``float32 (N, 4)`` xyxy standing-person boxes (pixels; the box height taken as the stature) -> the head of each,
    :data:`~anonlab.defenses.regions.HEAD_HEIGHT` x the box height tall from the box top,
    :data:`~anonlab.defenses.regions.HEAD_BREADTH` x it wide about the box's
    horizontal centre. An estimate: a walker's head is within a few pixels of the box's centre line."""
    from anonlab.defenses.regions import HEAD_BREADTH, HEAD_HEIGHT, head_boxes

    h = persons[:, 3] - persons[:, 1]
    cx = (persons[:, 0] + persons[:, 2]) / 2
    out = head_boxes(persons, HEAD_HEIGHT)
    out[:, 0], out[:, 2] = cx - h * HEAD_BREADTH / 2, cx + h * HEAD_BREADTH / 2
    return out


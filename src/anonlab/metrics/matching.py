"""Greedy IoU matching of one image's detections to its ground truth (the COCO / PASCAL convention).

Detections are taken in descending score order; each takes the unmatched ground-truth box of highest
IoU >= ``iou``. A detection whose best match is an *ignored* box (e.g. WIDER's invalid faces) counts
neither as TP nor FP, and ignored boxes are never FN. Runs on CPU numpy: it is called once per image when
results leave the device for the store, never inside the GPU loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU; zero-area boxes have IoU 0 with everything."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class Match:
    """Outcome for one image: counts plus which ground-truth boxes were found (for disappearance)."""

    tp: int
    fp: int
    fn: int
    n_gt: int  # non-ignored ground-truth boxes
    gt_found: np.ndarray  # (G,) bool over all ground-truth boxes (ignored ones always False)


def match_image(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_ignore: np.ndarray | None = None,
    iou: float = 0.5,
) -> Match:
    """Match one image's detections (already thresholded) to its ground truth at IoU >= ``iou``."""
    g = len(gt_boxes)
    ignore = np.zeros(g, dtype=bool) if gt_ignore is None else np.asarray(gt_ignore, dtype=bool)
    found = np.zeros(g, dtype=bool)
    if len(det_boxes) == 0:
        n_gt = int((~ignore).sum())
        return Match(0, 0, n_gt, n_gt, found)
    ious = box_iou_np(det_boxes, gt_boxes)
    order = np.argsort(-np.asarray(det_scores), kind="stable")
    tp = fp = 0
    taken = np.zeros(g, dtype=bool)
    for d in order:  # per detection of one image: the greedy rule is sequential by definition
        cand = np.where(taken | (ious[d] < iou), -1.0, ious[d])
        # prefer a real (non-ignored) box; fall back to an ignored one (COCO does the same)
        real = np.where(ignore, -1.0, cand)
        j = int(np.argmax(real)) if g else -1
        if g and real[j] >= 0:
            taken[j] = found[j] = True
            tp += 1
            continue
        j = int(np.argmax(cand)) if g else -1
        if g and cand[j] >= 0 and ignore[j]:
            continue  # matched an ignored box: neither TP nor FP (ignored boxes may absorb many detections)
        fp += 1
    n_gt = int((~ignore).sum())
    return Match(tp, fp, n_gt - int((found & ~ignore).sum()), n_gt, found & ~ignore)


def disappearance(found_clean: np.ndarray, found_defended: np.ndarray) -> float | None:
    """Fraction of ground-truth objects the detector found on the clean image but misses after the defense.

    None when it found nothing on the clean image (the rate is undefined, not zero).
    """
    base = int(found_clean.sum())
    if base == 0:
        return None
    return float((found_clean & ~found_defended).sum()) / base

"""Greedy IoU matching of one image's detections to its ground truth, the rule of pycocotools' ``COCOeval``.

Detections are taken in descending score order; each takes the unmatched ground-truth box of highest
IoU >= ``iou``, non-ignored boxes first. A detection matched to an *ignored* box (e.g. WIDER's invalid faces,
COCO crowd regions) counts neither as TP nor FP, and ignored boxes are never FN: exactly what AP (through
pycocotools, ``metrics/detection.py``) counts. Runs on CPU numpy: it is called once per image when results leave
the device for the store, never inside the GPU loop.
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


def _xywh(boxes: np.ndarray, clamp: bool) -> np.ndarray:
    """float xyxy (N, 4) -> float64 xywh, computed as :class:`~anonlab.metrics.detection.APAccumulator` hands boxes
    to pycocotools (ground truth with width and height clamped at 0), so both see bit-identical boxes."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    wh = b[:, 2:] - b[:, :2]
    return np.concatenate([b[:, :2], np.maximum(wh, 0.0) if clamp else wh], axis=1)


def _last_best(values: np.ndarray, allowed: np.ndarray) -> int:
    """Index of the largest ``values[allowed]`` (the last one on ties, as COCOeval's ``<`` comparison keeps it),
    or -1 when nothing is allowed."""
    if not allowed.any():
        return -1
    idx = np.flatnonzero(allowed)
    v = values[idx]
    return int(idx[np.flatnonzero(v == v.max())[-1]])


def match_image(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_ignore: np.ndarray | None = None,
    iou: float = 0.5,
) -> Match:
    """Match one image's detections (already thresholded) to its ground truth at IoU >= ``iou``, exactly as
    pycocotools' ``COCOeval.evaluateImg`` does for AP (ignored boxes are passed to it as ``iscrowd=1``, see
    :class:`~anonlab.metrics.detection.APAccumulator`), so row counts and AP never disagree on the same boxes:

    - detections in descending score order (stable); IoUs from ``pycocotools.mask.iou``, where an ignored
      (crowd) box's IoU is intersection over the *detection's* area;
    - a detection takes the unmatched non-ignored box of highest IoU >= ``iou`` (the later box on ties);
      only when there is none, the ignored box of highest such IoU (ignored boxes may absorb many detections);
    - TP: matched a non-ignored box; FP: matched nothing; a detection matched to an ignored box is neither;
      FN: non-ignored boxes left unmatched. The threshold is ``min(iou, 1 - 1e-10)``, as in COCOeval.

    det_boxes ``(D, 4)`` and gt_boxes ``(G, 4)`` xyxy pixels of one image; det_scores ``(D,)``; gt_ignore ``(G,)``
    bool (None: none ignored). Thresholding detections by score before or after matching gives the same counts
    (matching is greedy in score order).
    """
    g = len(gt_boxes)
    ignore = np.zeros(g, dtype=bool) if gt_ignore is None else np.asarray(gt_ignore, dtype=bool).reshape(g)
    n_gt = int((~ignore).sum())
    found = np.zeros(g, dtype=bool)
    if len(det_boxes) == 0 or g == 0:
        return Match(0, len(det_boxes), n_gt, n_gt, found)
    from pycocotools import mask as mask_utils

    ious = np.asarray(mask_utils.iou(_xywh(det_boxes, clamp=False), _xywh(gt_boxes, clamp=True),
                                     ignore.astype(np.uint8)), dtype=np.float64).reshape(len(det_boxes), g)
    order = np.argsort(-np.asarray(det_scores, dtype=np.float64), kind="stable")
    thr = min(float(iou), 1 - 1e-10)
    tp = fp = 0
    for d in order:  # per detection of one image: the greedy rule is sequential by definition
        ok = ious[d] >= thr
        j = _last_best(ious[d], ok & ~ignore & ~found)
        if j >= 0:
            found[j] = True
            tp += 1
        elif _last_best(ious[d], ok & ignore) < 0:
            fp += 1
        # else: matched an ignored box, neither TP nor FP
    return Match(tp, fp, n_gt - tp, n_gt, found)


def disappearance(found_clean: np.ndarray, found_defended: np.ndarray) -> float | None:
    """Fraction of ground-truth objects the detector found on the clean image but misses after the defense.

    None when it found nothing on the clean image (the rate is undefined, not zero).
    """
    base = int(found_clean.sum())
    if base == 0:
        return None
    return float((found_clean & ~found_defended).sum()) / base

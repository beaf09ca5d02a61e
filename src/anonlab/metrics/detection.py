"""Average precision through pycocotools (the reference implementation; never hand-rolled)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np


@dataclass
class APAccumulator:
    """Collects one (setting, detector)'s detections and ground truth over many images; ``ap()`` runs COCOeval.

    Boxes are xyxy pixels; ignored ground truth is passed to COCO as ``iscrowd=1`` (pycocotools' only ignore
    mechanism: such boxes are matched by intersection over detection area and never count).
    """

    iou: float = 0.5
    images: list[dict] = field(default_factory=list)
    gts: list[dict] = field(default_factory=list)
    dets: list[dict] = field(default_factory=list)

    def add(self, gt_boxes: np.ndarray, gt_ignore: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray) -> None:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id})
        for box, ign in zip(gt_boxes, gt_ignore):
            x1, y1, x2, y2 = (float(v) for v in box)
            w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
            self.gts.append({"id": len(self.gts) + 1, "image_id": image_id, "category_id": 1,
                             "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": int(bool(ign))})
        for box, score in zip(det_boxes, det_scores):
            x1, y1, x2, y2 = (float(v) for v in box)
            self.dets.append({"image_id": image_id, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                              "score": float(score)})

    def ap(self) -> float | None:
        """AP at IoU ``self.iou`` (101-point interpolated, COCO), or None when there is no ground truth."""
        if not any(g["iscrowd"] == 0 for g in self.gts):
            return None
        if not self.dets:
            return 0.0
        return coco_ap(self.images, self.gts, self.dets, self.iou)


def coco_eval(images: list[dict], gts: list[dict], dets: list[dict], iou: float = 0.5):
    """A pycocotools ``COCOeval`` at a single IoU threshold, all areas, up to 10,000 detections per image, with
    ``evaluate()`` run (per-image matches in ``evalImgs``); ``dets`` may be empty."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gts, "categories": [{"id": 1, "name": "object"}]}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets) if dets else COCO()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.iouThrs = np.array([iou])
        ev.params.maxDets = [10000]
        ev.params.areaRng = [[0.0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
    return ev


def coco_ap(images: list[dict], gts: list[dict], dets: list[dict], iou: float = 0.5) -> float:
    """pycocotools AP at a single IoU threshold, all areas, up to 10,000 detections per image (:func:`coco_eval`)."""
    ev = coco_eval(images, gts, dets, iou)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.accumulate()
    precision = ev.eval["precision"][0, :, 0, 0, 0]  # (R,) over recall thresholds
    valid = precision > -1
    return float(precision[valid].mean()) if valid.any() else 0.0

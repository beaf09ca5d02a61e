"""Result rows: one per (image, defense setting, detector), with the evidence to recompute any summary. The
columns and their types are :data:`anonlab.store.RESULT_SCHEMA` (the schema lives in the store and nowhere else);
this module fills them from a batch's ground truth and detections, on the host."""

from __future__ import annotations

from dataclasses import dataclass, field

from anonlab.camera.scale import median_face_height
from anonlab.metrics.matching import disappearance, match_image
from anonlab.types import Defense, Detections, Detector, GroundTruth, Sample


@dataclass
class RowLabels:
    """What every row of a job repeats: the dataset, camera, region source and IoU, the settings (the clean
    baseline ``none`` first) with their labels and parameter JSON, the scored panel, the kinds whose ground truth
    is pseudo, and each (setting label, detector) pair's configuration hash."""

    dataset: str
    camera: str
    regions: str
    iou: float
    settings: list[Defense]
    detectors: dict[str, Detector]
    pseudo: tuple[str, ...]
    hashes: dict[tuple[str, str], str]
    #: per setting, its label and parameter JSON, computed once (both inspect signatures; rows need them often)
    labels: list[str] = field(init=False)
    params_json: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.labels = [s.label() for s in self.settings]
        self.params_json = [s.params_json() for s in self.settings]


def make_rows(job: RowLabels, batch: list[Sample], gts: list[GroundTruth],
              per_setting: dict[str, dict[str, Detections]], n_regions: dict[str, list[int]]) -> list[dict]:
    """Rows of one batch. ``gts`` are the ground truths in the frames the detectors saw (after the camera);
    ``per_setting[label][detector]`` the detections on the host (every score >= the detector's floor);
    ``n_regions[label][i]`` the boxes the setting changed in image ``i``. A detection counts at the detector's own
    threshold; matching is :func:`~anonlab.metrics.matching.match_image` (pycocotools' rule) at ``job.iou``."""
    rows = []
    clean_label = job.labels[0]
    for i, (sample, gt) in enumerate(zip(batch, gts)):
        fpx = median_face_height(gt)
        for name, det in job.detectors.items():
            kind = det.kind
            gt_boxes = gt.boxes(kind).numpy()
            gt_ignore = gt.ignore(kind).numpy()
            clean_found = None
            for setting, label, params in zip(job.settings, job.labels, job.params_json):
                d = per_setting[label][name]
                sel = d.batch_idx == i
                boxes, scores = d.boxes[sel].numpy(), d.scores[sel].numpy()
                keep = scores >= det.threshold
                m = match_image(boxes[keep], scores[keep], gt_boxes, gt_ignore, job.iou)
                if label == clean_label:
                    clean_found = m.gt_found
                rows.append({
                    "dataset": job.dataset, "image": sample.image_id, "camera": job.camera,
                    "defense": setting.name, "params": params, "setting": label,
                    "regions": job.regions, "detector": name, "detector_kind": kind,
                    "threshold": det.threshold, "n_gt": m.n_gt, "n_det": int(keep.sum()),
                    "tp": m.tp, "fp": m.fp, "fn": m.fn,
                    "recall": m.tp / m.n_gt if m.n_gt else None,
                    "precision": m.tp / (m.tp + m.fp) if (m.tp + m.fp) else None,
                    "disappearance": disappearance(clean_found, m.gt_found),
                    "n_regions": n_regions[label][i] if setting.name != "none" else 0,
                    "pseudo_gt": kind in job.pseudo, "iou": job.iou, "face_px": fpx,
                    "config_hash": job.hashes[(label, name)],
                    "clean_found": int(clean_found.sum()), "lost": int((clean_found & ~m.gt_found).sum()),
                    "gt_boxes": gt_boxes.ravel().tolist(), "gt_ignore": gt_ignore.tolist(),
                    "det_boxes": boxes.ravel().tolist(), "det_scores": scores.tolist(),
                })
    return rows

"""The summary table, recomputed from stored result rows (so merged shards and split jobs summarise exactly)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from anonlab.metrics.bootstrap import bootstrap_ratio
from anonlab.metrics.detection import APAccumulator

_KEEP = ("dataset", "camera", "defense", "params", "setting", "regions", "detector", "detector_kind", "pseudo_gt",
         "config_hash")
_COUNTS = ("tp", "fp", "fn", "n_gt", "clean_found", "lost")


def summarize(rows: pa.Table | Iterable[dict], seed: int = 0) -> list[dict]:
    """One summary row per ``config_hash`` (a dataset x camera x regions x setting x detector): pooled counts,
    recall with a 95 % percentile-bootstrap interval over images, AP (pycocotools, at the rows' IoU) and the
    disappearance rate (clean detections lost). Ordered setting-major, in the order rows first show them; the
    numbers do not depend on the rows' order (merged shards and split jobs summarise like one run)."""
    if isinstance(rows, pa.Table):
        rows = rows.to_pylist()
    groups: dict[str, dict] = {}
    setting_order: dict[str, int] = {}
    detector_order: dict[str, int] = {}
    for r in rows:
        setting_order.setdefault(r["setting"], len(setting_order))
        detector_order.setdefault(r["detector"], len(detector_order))
        g = groups.get(r["config_hash"])
        if g is None:
            g = groups[r["config_hash"]] = {"first": r, "rows": {}, **{k: 0 for k in _COUNTS}}
        if r["image"] in g["rows"]:
            raise ValueError(f"image {r['image']!r} appears twice for {r['setting']} x {r['detector']} "
                             f"(config {r['config_hash']}): the merged folders hold the same job twice")
        for k in _COUNTS:
            g[k] += r[k]
        g["rows"][r["image"]] = r
    out = []
    for g in sorted(groups.values(), key=lambda g: (setting_order[g["first"]["setting"]],
                                                   detector_order[g["first"]["detector"]])):
        # images in a fixed order (by id): pycocotools breaks score ties by insertion order and the bootstrap
        # resamples by position, so neither may depend on how shards were merged
        ordered = [g["rows"][k] for k in sorted(g["rows"])]
        ap = APAccumulator(float(g["first"]["iou"]))
        for r in ordered:
            ap.add(_boxes(r["gt_boxes"]), np.asarray(r["gt_ignore"], dtype=bool), _boxes(r["det_boxes"]),
                   np.asarray(r["det_scores"], dtype=np.float32))
        per = np.array([(r["tp"], r["n_gt"]) for r in ordered], dtype=np.float64).reshape(-1, 2)
        lo, hi = bootstrap_ratio(per[:, 0], per[:, 1], seed=seed)
        n_gt = int(g["n_gt"])
        out.append({
            **{k: g["first"][k] for k in _KEEP},
            "n_images": len(per), "n_gt": n_gt, "tp": int(g["tp"]), "fp": int(g["fp"]), "fn": int(g["fn"]),
            "recall": g["tp"] / n_gt if n_gt else None, "recall_lo": lo, "recall_hi": hi, "ap": ap.ap(),
            "disappearance": g["lost"] / g["clean_found"] if g["clean_found"] else None,
        })
    return out


def _boxes(flat) -> np.ndarray:
    return np.asarray(flat, dtype=np.float32).reshape(-1, 4)

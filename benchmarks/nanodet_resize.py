"""NanoDet-m: which resize the letterbox uses, and what it changes (issue 11), on Penn-Fudan (Penn part, 263 persons).

    python benchmarks/nanodet_resize.py --out benchmarks/out/nanodet_resize.json

Compares, at threshold 0.35 and IoU 0.5: the upstream pipeline (cv2 INTER_AREA on uint8, onnxruntime, GFL decode;
the reference in tests/test_detector_nanodet.py), ``NanoDetM.forward`` (exact area filter, rounded like OpenCV's
uint8 resize), ``forward_float`` (area filter, not rounded: what patch training differentiates), and torch's
antialiased bilinear resize (what YOLOX-nano's letterbox uses) in its place. Reports recall and the share of each
variant's boxes that have an upstream box at IoU >= 0.99.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _report import emit
from torchvision.ops import box_iou

import anonlab.detectors.nanodet as nd
from anonlab.datasets.pennfudan import PennFudanDataset
from anonlab.detectors._common import clip_boxes, nms_detections, ort_session
from anonlab.metrics.matching import match_image
from anonlab.provenance import environment
from anonlab.weights import shared_root

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_detector_nanodet import _upstream_persons  # noqa: E402  (the upstream reference lives with its test)


def _bilinear(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    d = PennFudanDataset(str(shared_root() / "datasets/pennfudanped_penn/PennFudanPed"))
    det = nd.NanoDetM().eval()
    sess = ort_session(det.weights_path, "nanodet_m")
    thr = det.threshold
    names = ("upstream_ort", "forward_area_rounded", "forward_float_area", "forward_float_bilinear_antialias")
    tp = dict.fromkeys(names, 0)
    n_gt = 0
    close: dict[str, list[bool]] = {k: [] for k in names[1:]}
    n = len(d) if args.limit is None else min(args.limit, len(d))
    for i in range(n):
        s = d.load(i)
        h, w = s.image.shape[1:]

        def post(pred: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            z = torch.zeros(pred.shape[0], dtype=torch.int64)
            r = nms_detections(clip_boxes(pred[:, :4], (h, w)), pred[:, 4 + nd.PERSON], z, z, det.nms_iou, thr)
            return r.boxes.numpy(), r.scores.numpy()

        ref = _upstream_persons(sess, s.image.permute(1, 2, 0).numpy(), thr, det.nms_iou)
        with torch.no_grad():
            got = det(s.image[None]).above(thr)
            x = s.image[None].float() / 255
            outs = {"upstream_ort": ref, "forward_area_rounded": (got.boxes.numpy(), got.scores.numpy()),
                    "forward_float_area": post(det.forward_float(x)[0])}
            area, nd.area_resize = nd.area_resize, _bilinear
            try:
                outs["forward_float_bilinear_antialias"] = post(det.forward_float(x)[0])
            finally:
                nd.area_resize = area
        gt = s.gt.persons.numpy()
        n_gt += len(gt)
        for k, (b, sc) in outs.items():
            tp[k] += match_image(b, sc, gt, None, 0.5).tp
            if k != "upstream_ort" and len(b):
                iou = box_iou(torch.from_numpy(b), torch.from_numpy(ref[0])) if len(ref[0]) else torch.zeros(len(b), 1)
                close[k] += (iou.max(1).values >= 0.99).tolist()
    emit({"date": dt.date.today().isoformat(), "env": environment("cpu"), "images": n, "persons": n_gt,
          "threshold": thr, "match_iou": 0.5,
          "recall": {k: round(tp[k] / n_gt, 4) for k in names}, "tp": tp,
          "share_boxes_iou_ge_0.99_with_upstream": {k: round(float(np.mean(v)), 4) for k, v in close.items()}},
         args.out)


if __name__ == "__main__":
    main()
